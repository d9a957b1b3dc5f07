"""What a trained model needs from the data layer besides the features: a split's raw images
(to apply a model to them) and the training statistics that `normalize` standardized with.

Both follow `pipeline.load_features` step by step and call its own functions, so a model sees
exactly the images and statistics its trial trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuner.core.config import TrialConfig
from tuner.data.pipeline import load_features, open_source, three_splits
from tuner.data.prepare import compose_labels, resolve_label_names, standardization_stats
from tuner.errors import TunerError

SPLITS = ("train", "val", "test", "all")


@dataclass(frozen=True)
class SplitImages:
    """Raw images (N, C, H, W) of one split, their labels (coarse when merged) and fine labels."""

    images: np.ndarray
    labels: np.ndarray
    fine_labels: np.ndarray
    label_names: tuple[str, ...]


def normalization_stats(
    cfg: TrialConfig, data_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The train mean/std `cfg.normalize` standardized with (None when it does not normalize).

    Reads the un-normalized features (from the feature cache after a search) rather than
    changing `load_features`, whose FeatureSet holds standardized arrays only.
    """
    if not cfg.normalize:
        return None
    raw = load_features(
        cfg.replace(normalize=False), data_dir=data_dir, cache_dir=cache_dir, progress=False
    )
    return standardization_stats(raw.x_train)


def split_images(
    cfg: TrialConfig, split: str, data_dir: str | Path | None = None, progress: bool = True
) -> SplitImages:
    """The images of `split` (train, val, test or all) in the order `load_features` puts their
    features."""
    if split not in SPLITS:
        raise TunerError(f"--split {split!r} is not valid: expected one of {', '.join(SPLITS)}.")
    data = open_source(cfg, data_dir).load(progress)
    # load_features' own split, applied to row numbers: it depends on the labels and seeds only.
    rows = {"x_train": np.arange(len(data.y_train))[:, None], "y_train": data.y_train}
    if data.x_test is not None:
        rows.update(x_test=np.arange(len(data.y_test))[:, None], y_test=data.y_test)
    parts = three_splits(cfg, rows)
    chosen = ("train", "val", "test") if split == "all" else (split,)
    sources = {
        part: data.x_test if part == "test" and data.x_test is not None else data.x_train
        for part in chosen
    }
    images = np.concatenate([sources[part][parts[part][0][:, 0]] for part in chosen])
    fine = np.concatenate([parts[part][1] for part in chosen]).astype(np.int64)
    labels, names = fine, tuple(data.label_names)
    if cfg.composite_labels is not None:
        labels, names = compose_labels(fine, cfg.composite_labels, names)
    return SplitImages(images, labels, fine, resolve_label_names(names, cfg.label_names))
