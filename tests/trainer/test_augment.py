"""Augmentation: random shifts and rotations of training images (augment_shift, augment_degrees)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tuner.core.config import TrialConfig
from tuner.data import load_features
from tuner.errors import TunerError
from tuner.trainer.augment import jitter
from tuner.trainer.networks import Forward
from tuner.trainer.train import fit, training_step

IMAGE = (1, 16, 16)


def blobs(n: int) -> torch.Tensor:
    """n flat 16x16 images, each a 4x4 square of ones in the middle: nothing can leave the frame."""
    x = torch.zeros(n, *IMAGE)
    x[:, :, 6:10, 6:10] = 1.0
    return x.reshape(n, -1)


def centroids(x: torch.Tensor) -> torch.Tensor:
    images = x.reshape(-1, IMAGE[1], IMAGE[2])
    rows = torch.arange(IMAGE[1], dtype=x.dtype)
    mass = images.sum((1, 2))
    return torch.stack(
        [(images.sum(2) * rows).sum(1) / mass, (images.sum(1) * rows).sum(1) / mass], 1
    )


def test_no_jitter_gives_the_images_back() -> None:
    x = torch.rand(5, 256)
    out = jitter(x, IMAGE, 0.0, 0.0, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.allclose(out, x, atol=1e-5)


def test_shifts_move_each_image_by_up_to_max_shift_and_keep_its_ink() -> None:
    x = blobs(200)
    out = jitter(x, IMAGE, 2.0, 0.0, torch.Generator().manual_seed(0))
    moved = centroids(out) - centroids(x)
    assert moved.abs().max() <= 2.0 + 1e-4
    assert moved.abs().max() > 1.5 and moved.std(0).min() > 0.5  # spread over the range, per image
    assert torch.allclose(out.sum(1), x.sum(1), atol=1e-3)  # a translation in frame keeps the ink


def bar_angles(x: torch.Tensor) -> torch.Tensor:
    """Each image's principal axis, in degrees from the horizontal (its ink's second moments)."""
    images = x.reshape(-1, IMAGE[1], IMAGE[2])
    rows, cols = torch.meshgrid(torch.arange(IMAGE[1]), torch.arange(IMAGE[2]), indexing="ij")
    mass = images.sum((1, 2))
    r = rows - ((images * rows).sum((1, 2)) / mass)[:, None, None]
    c = cols - ((images * cols).sum((1, 2)) / mass)[:, None, None]
    rr, cc, rc = ((images * a * b).sum((1, 2)) / mass for a, b in ((r, r), (c, c), (r, c)))
    return torch.rad2deg(0.5 * torch.atan2(2 * rc, cc - rr))


def test_rotation_turns_each_image_up_to_max_degrees_about_the_centre() -> None:
    x = torch.zeros(100, *IMAGE)
    x[:, :, 7:9, 2:14] = 1.0  # a horizontal bar through the centre
    x = x.reshape(100, -1)
    angles = bar_angles(jitter(x, IMAGE, 0.0, 30.0, torch.Generator().manual_seed(0))).abs()
    assert bar_angles(x).abs().max() < 1e-3
    assert angles.max() <= 31.0 and angles.max() > 25.0 and angles.std() > 5.0
    assert (
        centroids(jitter(x, IMAGE, 0.0, 30.0, torch.Generator().manual_seed(0))) - centroids(x)
    ).abs().max() < 0.5


def test_same_generator_state_same_jitter() -> None:
    x = torch.rand(8, 256)
    a = jitter(x, IMAGE, 2.0, 10.0, torch.Generator().manual_seed(3))
    b = jitter(x, IMAGE, 2.0, 10.0, torch.Generator().manual_seed(3))
    c = jitter(x, IMAGE, 2.0, 10.0, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


class _Identity(torch.nn.Module):
    """Reconstructs exactly what it was shown: its recon_loss is the distance to the target."""

    def forward(self, x: torch.Tensor, decode: bool = True) -> Forward:
        return Forward(embedding=x[:, :2], x_hat=x)


@pytest.mark.parametrize("shift, expect_zero", [(0.0, True), (2.0, False)])
def test_the_clean_image_is_the_reconstruction_target(shift: float, expect_zero: bool) -> None:
    cfg = TrialConfig(mu=0.0, augment_shift=shift)
    terms = training_step(
        cfg,
        _Identity(),
        blobs(6),
        torch.zeros(6, dtype=torch.long),
        torch.Generator().manual_seed(0),
        image=IMAGE,
    )
    assert (float(terms["recon_loss"]) == 0.0) is expect_zero


def test_a_jittered_trial_trains_reproducibly_on_digits() -> None:
    cfg = TrialConfig(
        hidden_dims=(32,), iterations=60, eval_every=30, augment_shift=1.0, augment_degrees=10.0
    )
    data = load_features(cfg, progress=False).without_test()
    first, again = fit(cfg, data), fit(cfg, data)
    plain = fit(cfg.replace(augment_shift=0.0, augment_degrees=0.0), data)
    assert first.metrics["knn_accuracy"] == again.metrics["knn_accuracy"]
    assert first.metrics["loss"] != plain.metrics["loss"]
    assert first.history[-1]["loss"] < first.history[0]["loss"] * 1.5


def test_jitter_is_refused_without_images() -> None:
    with pytest.raises(TunerError, match="augment_shift.*feature_extractor hog"):
        TrialConfig(feature_extractor="hog", augment_shift=1.0)
    with pytest.raises(TunerError, match="augment_degrees.*>= 0"):
        TrialConfig(augment_degrees=-5.0)
    cfg = TrialConfig(augment_shift=1.0, iterations=5)
    data = dataclasses.replace(load_features(cfg, progress=False).without_test(), image_shape=None)
    with pytest.raises(TunerError, match="not images"):
        fit(cfg, data)
