"""Random affine jitter of image batches: a shift of up to `max_shift` pixels each way and a
rotation of up to `max_degrees`, drawn per image, in a few tensor ops on the batch's device.

Why: at latent_dim 2 the metric loss memorises a few thousand training images (their kNN
accuracy nears 1.0 while validation's stalls); jittered copies make it learn what a digit
looks like rather than where its pixels fall. Pure function: no state but the generator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tuner.core.config import TrialConfig
from tuner.data.features import FeatureSet
from tuner.errors import TunerError


def jitter(
    x: Tensor,
    image: tuple[int, int, int],
    max_shift: float,
    max_degrees: float,
    generator: torch.Generator,
) -> Tensor:
    """Flat images (B, C*H*W) moved and turned at random, flat again; out-of-frame pixels are 0."""
    b, (c, h, w) = x.shape[0], image
    u = torch.rand(b, 3, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
    angle = u[:, 0] * math.radians(max_degrees)
    cos, sin = angle.cos(), angle.sin()
    # affine_grid works in [-1, 1] coordinates: one pixel is 2 / side.
    tx, ty = u[:, 1] * (2 * max_shift / w), u[:, 2] * (2 * max_shift / h)
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    return F.grid_sample(
        x.view(b, c, h, w), grid, padding_mode="zeros", align_corners=False
    ).reshape(b, -1)


def jitters(cfg: TrialConfig) -> bool:
    """Whether the trial's training images are jittered (augment_shift or augment_degrees > 0)."""
    return cfg.augment_shift > 0 or cfg.augment_degrees > 0


def image_to_jitter(cfg: TrialConfig, data: FeatureSet) -> tuple[int, int, int] | None:
    """The (C, H, W) that augmentation moves; a TunerError when it is on and the data has none."""
    if not jitters(cfg):
        return None
    if data.image_shape is None or len(data.image_shape) != 3:
        raise TunerError(
            f"augment_shift / augment_degrees move image pixels, and the {cfg.dataset} features "
            f"here are not images: set both to 0.",
            key="augment_shift",
        )
    c, h, w = data.image_shape
    return int(c), int(h), int(w)
