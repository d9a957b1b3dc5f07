"""`EmbeddingModel`: a trained encoder plus everything that turns raw inputs into its input.

Pure PyTorch (no Ray, no MLflow). It holds the AutoEncoder, the TrialConfig, the data settings
(input image shape, pixel scale, feature width, label names) and the normalization statistics
as buffers. `.embed(x)` / `.reconstruct(x)` take what the dataset starts from (images, or their
pixels as flat rows) and featurize them with the data layer's own `featurize`, so a saved model
computes exactly what its trial computed. `forward(features)` maps featurized (un-normalized)
rows to embeddings with torch ops only: that is what `torch.export`, and so MLflow's pt2 format,
captures.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tuner.core.config import TrialConfig
from tuner.core.datasets import DATASETS, input_shape
from tuner.data.features import FeatureSet
from tuner.data.hog import hog_length
from tuner.data.pipeline import featurize
from tuner.data.prepare import apply_standardization
from tuner.data.resnet import FEATURE_DIM, resolve_weights
from tuner.data.sources import ImageData
from tuner.errors import TunerError
from tuner.trainer.evaluation import embed_and_reconstruct
from tuner.trainer.networks import AutoEncoder, build_model

FORMAT = 1
CONFIG_FILE, STATE_FILE = "embedder.json", "state_dict.pt"
CHUNK = 8192  # embed_and_reconstruct's chunk: the same batches give bit-identical embeddings


@dataclass(frozen=True)
class DataSettings:
    """What the TrialConfig does not say about the inputs: their shape, scale and feature width."""

    image_shape: tuple[int, ...]  # (C, H, W) of one input image
    max_value: float  # the pixel value meaning white, as the dataset's loader scales it
    n_features: int  # the encoder's input width
    label_names: tuple[str, ...]  # coarse names when labels were merged


class EmbeddingModel(nn.Module):
    def __init__(
        self,
        config: TrialConfig,
        autoencoder: AutoEncoder,
        settings: DataSettings,
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.config, self.settings, self.autoencoder = config, settings, autoencoder
        n = settings.n_features
        # float64, as the data layer standardizes: forward reproduces its features exactly.
        self.register_buffer(
            "norm_mean", torch.as_tensor(np.zeros(n) if mean is None else mean, dtype=torch.float64)
        )
        self.register_buffer(
            "norm_std", torch.as_tensor(np.ones(n) if std is None else std, dtype=torch.float64)
        )
        self._weights: Any = None  # resnet weights, resolved on first use
        self.eval()

    # ------------------------------------------------------------------ building
    @classmethod
    def from_training(
        cls,
        cfg: TrialConfig,
        autoencoder: AutoEncoder,
        data: FeatureSet,
        stats: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> EmbeddingModel:
        """From a trained AutoEncoder (FitResult.model, or a checkpoint's weights) and the
        FeatureSet it trained on; `stats` is `tuner.data.inputs.normalization_stats(cfg)`."""
        if cfg.normalize and stats is None:
            raise TunerError(
                "normalize is true: pass the training statistics "
                "(tuner.data.inputs.normalization_stats(cfg)) to build the model."
            )
        # The shape and scale the dataset loads with (the shape checked against the feature width).
        shape = (
            tuple(data.image_shape)
            if data.image_shape
            else input_shape(cfg.dataset, cfg.image_size)
        )
        settings = DataSettings(
            shape, DATASETS[cfg.dataset].max_value, data.n_features, tuple(data.label_names)
        )
        _check_width(cfg, settings)
        mean, std = stats if cfg.normalize and stats is not None else (None, None)
        return cls(cfg, autoencoder.cpu().eval(), settings, mean, std)

    @classmethod
    def from_state(
        cls,
        cfg: TrialConfig,
        state: dict[str, Any],
        data: FeatureSet,
        stats: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> EmbeddingModel:
        """From a trial checkpoint's `TrainState.state_dict()` (its "model" weights)."""
        autoencoder = build_model(cfg, data.n_features)
        autoencoder.load_state_dict(state["model"])
        return cls.from_training(cfg, autoencoder, data, stats)

    # ------------------------------------------------------------------ applying
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Featurized, un-normalized rows (N, n_features) -> embeddings (N, latent_dim)."""
        x = ((features.to(torch.float64) - self.norm_mean) / self.norm_std).to(torch.float32)
        return self.autoencoder(x, decode=False).embedding

    def embed(self, x: np.ndarray, progress: bool = False) -> np.ndarray:
        """Raw inputs -> embeddings (N, latent_dim) as float32."""
        return self._run(x, progress)[0]

    def reconstruct(self, x: np.ndarray, progress: bool = False) -> np.ndarray:
        """Raw inputs -> reconstructed features (N, n_features), de-normalized (raw: pixels in
        [0, 1])."""
        x_hat = self._run(x, progress)[1].astype(np.float64)
        return (x_hat * self.norm_std.numpy() + self.norm_mean.numpy()).astype(np.float32)

    def model_input(self, x: np.ndarray, progress: bool = False) -> np.ndarray:
        """What the encoder sees: the features, standardized when the trial normalized them."""
        feats = self.features(x, progress)
        if self.config.normalize:
            feats = apply_standardization(feats, self.norm_mean.numpy(), self.norm_std.numpy())
        return np.ascontiguousarray(feats, dtype=np.float32)

    def features(self, x: np.ndarray, progress: bool = False) -> np.ndarray:
        """The data layer's featurization of raw inputs (before normalization)."""
        images = self.as_images(x)
        if self.config.feature_extractor == "resnet" and self._weights is None:
            self._weights = resolve_weights(self.config.resnet_weights, self.config.download)
        data = ImageData(
            images,
            np.zeros(len(images), dtype=np.int64),
            None,
            None,
            self.settings.label_names,
            self.settings.max_value,
        )
        return featurize(self.config, data, self._weights, progress)["x_train"]

    def as_images(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W), (N, H, W) for one channel, or flat pixel rows -> (N, C, H, W); else
        TunerError."""
        x = np.asarray(x)
        shape = self.settings.image_shape
        if x.ndim == 4 and x.shape[1:] == shape:
            return x
        if x.ndim == 3 and shape[0] == 1 and x.shape[1:] == shape[1:]:
            return x[:, None]
        if x.ndim == 2 and x.shape[1] == math.prod(shape):
            return x.reshape(len(x), *shape)
        raise TunerError(
            f"input of shape {tuple(x.shape)} does not fit this model: it takes "
            f"{self.config.dataset} images of shape (N, {', '.join(map(str, shape))})"
            + (f" or (N, {shape[1]}, {shape[2]})" if shape[0] == 1 else "")
            + f", or their pixels as rows (N, {math.prod(shape)})."
        )

    def _run(self, x: np.ndarray, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        inputs = torch.from_numpy(self.model_input(x, progress))
        device = next(self.autoencoder.parameters()).device
        return embed_and_reconstruct(self.autoencoder, inputs.to(device), chunk=CHUNK)

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> list[Path]:
        """embedder.json (config, data settings) and state_dict.pt (weights, statistics)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "data": dataclasses.asdict(self.settings),
        }
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        torch.save({k: v.cpu() for k, v in self.state_dict().items()}, folder / STATE_FILE)
        return [folder / CONFIG_FILE, folder / STATE_FILE]

    @classmethod
    def load(cls, folder: str | Path) -> EmbeddingModel:
        folder = Path(folder)
        try:
            meta = json.loads((folder / CONFIG_FILE).read_text())
            state = torch.load(folder / STATE_FILE, weights_only=True, map_location="cpu")
        except (OSError, ValueError) as err:
            raise TunerError(
                f"{folder} does not hold a tuner model ({CONFIG_FILE} and {STATE_FILE}): {err}"
            ) from None
        cfg = TrialConfig.from_dict(meta["config"], source=str(folder / CONFIG_FILE))
        d = meta["data"]
        settings = DataSettings(
            tuple(d["image_shape"]),
            float(d["max_value"]),
            int(d["n_features"]),
            tuple(d["label_names"]),
        )
        model = cls(cfg, build_model(cfg, settings.n_features), settings)
        model.load_state_dict(state)
        return model.eval()


def expected_width(cfg: TrialConfig, shape: tuple[int, ...]) -> int:
    """The feature width the data layer gives images of `shape` (C, H, W)."""
    if cfg.feature_extractor == "raw":
        return math.prod(shape)
    if cfg.feature_extractor == "hog":
        return hog_length(
            shape[1:], cfg.hog_pixels_per_cell, cfg.hog_cells_per_block, cfg.hog_orientations
        )
    return FEATURE_DIM


def _check_width(cfg: TrialConfig, settings: DataSettings) -> None:
    # A wrong shape table would only show when someone applies the model: say it at build time.
    width = expected_width(cfg, settings.image_shape)
    if width != settings.n_features:
        raise TunerError(
            f"{cfg.dataset} with feature_extractor {cfg.feature_extractor}: images of shape "
            f"{settings.image_shape} give {width} features, but the model was trained on "
            f"{settings.n_features}; pass the data the trial trained on."
        )
