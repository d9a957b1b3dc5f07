"""What a trained model needs from the data layer besides the features: a split's raw images
(to apply a model to them) and the training statistics that `normalize` standardized with.

Both follow `pipeline.load_features` step by step and call its own functions, so a model sees
exactly the images and statistics its trial trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuner.data.pipeline import load_features, open_source
from tuner.data.prepare import compose_labels, resolve_label_names, standardization_stats, stratified_split
from tuner.errors import TunerError
from tuner.trainer.config import TrialConfig

SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class SplitImages:
    """Raw images (N, C, H, W) of one split, their labels (coarse when merged) and fine labels."""

    images: np.ndarray
    labels: np.ndarray
    fine_labels: np.ndarray
    label_names: tuple[str, ...]


def normalization_stats(cfg: TrialConfig, data_dir: str | Path | None = None,
                        cache_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The train mean/std `cfg.normalize` standardized with (None when it does not normalize).

    Reads the un-normalized features (from the feature cache after a search) rather than
    changing `load_features`, whose FeatureSet holds standardized arrays only.
    """
    if not cfg.normalize:
        return None
    raw = load_features(cfg.replace(normalize=False), data_dir=data_dir, cache_dir=cache_dir, progress=False)
    return standardization_stats(raw.x_train)


def split_images(cfg: TrialConfig, split: str, data_dir: str | Path | None = None,
                 progress: bool = True) -> SplitImages:
    """The images of `split` (train, test or all) in the order `load_features` puts their features."""
    if split not in SPLITS:
        raise TunerError(f"--split {split!r} is not valid: expected one of {', '.join(SPLITS)}.")
    data = open_source(cfg, data_dir).load(progress)
    if data.x_test is not None:
        parts = {"train": (data.x_train, data.y_train), "test": (data.x_test, data.y_test)}
    else:  # the same seeded split as load_features, applied to row numbers
        rows = np.arange(len(data.y_train))[:, None]
        r_tr, y_tr, r_te, y_te = stratified_split(rows, data.y_train, cfg.test_size, cfg.split_seed)
        parts = {"train": (data.x_train[r_tr[:, 0]], y_tr), "test": (data.x_train[r_te[:, 0]], y_te)}
    if split == "all":
        images = np.concatenate([parts["train"][0], parts["test"][0]])
        fine = np.concatenate([parts["train"][1], parts["test"][1]])
    else:
        images, fine = parts[split]
    labels, names = fine.astype(np.int64), tuple(data.label_names)
    if cfg.composite_labels is not None:
        labels, names = compose_labels(labels, cfg.composite_labels, names)
    return SplitImages(images, labels, fine.astype(np.int64), resolve_label_names(names, cfg.label_names))
