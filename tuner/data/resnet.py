"""ResNet-50 pooled features (2048-d) with torchvision's ImageNet weights or random ones.

Weights come from torch's hub cache; nothing is downloaded unless the config says
`download: true`, so an offline machine fails early with the path to put the file at.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tuner.errors import TunerError

FEATURE_DIM = 2048


def _weights_enum() -> Any:
    from torchvision.models import ResNet50_Weights

    return ResNet50_Weights


def checkpoint_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(resnet_weights: str, download: bool) -> Any:
    """The weights to use: None for "none"; else V2, or V1 when only V1 is cached."""
    if resnet_weights == "none":
        return None
    enum = _weights_enum()
    folder = checkpoint_dir()
    for weights in (enum.IMAGENET1K_V2, enum.IMAGENET1K_V1):
        if (folder / os.path.basename(weights.url)).is_file():
            return weights
    if download:
        return enum.IMAGENET1K_V2
    v2, v1 = (os.path.basename(w.url) for w in (enum.IMAGENET1K_V2, enum.IMAGENET1K_V1))
    raise TunerError(
        f"resnet_weights = 'imagenet': the ResNet-50 weights are not in torch's cache. Put {v2} "
        f"(from {enum.IMAGENET1K_V2.url}) or {v1} at {folder / v2} (resp. {folder / v1}); set "
        "$TORCH_HOME to use another cache; or set download: true to fetch them; or resnet_weights: "
        "none for random weights."
    )


def weights_name(weights: Any) -> str:
    return "none" if weights is None else str(weights)


def build_model(weights: Any) -> tuple[Any, Any]:
    """ResNet-50 with fc replaced by Identity, and the preprocessing its weights expect."""
    import torch
    from torchvision.models import resnet50

    try:
        # Random weights are drawn from a fixed seed, without touching the caller's RNG, so
        # "none" means the same random network every time (and cached features stay valid).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = resnet50(weights=weights)
    except (OSError, RuntimeError) as err:
        raise TunerError(
            f"resnet_weights = 'imagenet': could not load {weights} into {checkpoint_dir()}: "
            f"{err}. Copy the file there by hand, or use resnet_weights: none."
        ) from None
    model.fc = torch.nn.Identity()
    # Random weights have no preprocessing of their own: use the standard ImageNet one
    # (resize 256, centre crop 224, ImageNet mean/std), which is V1's preset.
    preprocess = (weights or _weights_enum().IMAGENET1K_V1).transforms()
    return model.eval(), preprocess


def resnet_features(
    images: np.ndarray,
    weights: Any = None,
    max_value: float | None = None,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(N, C, H, W) images (C = 1 or 3) -> (N, 2048) float32 pooled ResNet-50 features.

    Grayscale is replicated to three channels. `device` None: CUDA when available.
    """
    import torch
    from tqdm import tqdm

    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, 1|3, H, W) images, got shape {images.shape}")
    if max_value is None:
        max_value = 255.0 if images.dtype == np.uint8 else 1.0
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, preprocess = build_model(weights)
    model.to(device)
    out = np.empty((len(images), FEATURE_DIM), dtype=np.float32)
    with (
        torch.inference_mode(),
        tqdm(
            total=len(images),
            desc="resnet features",
            unit="img",
            file=sys.stderr,
            disable=not progress,
        ) as bar,
    ):
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            batch = batch.to(torch.float32) / float(max_value)
            if batch.shape[1] == 1:
                batch = batch.expand(-1, 3, -1, -1)
            feats = model(preprocess(batch.to(device)))
            out[start : start + len(batch)] = feats.cpu().numpy()
            bar.update(len(batch))
    return out
