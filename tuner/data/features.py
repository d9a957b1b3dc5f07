"""The arrays one search trains on: what every loader produces and every trial reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureSet:
    """Featurized train/test splits.

    `y_*` are the labels the constraints use (coarse labels when `composite_labels`
    merged classes, numbered 0..n_classes-1); `fine_y_*` keep the original labels for
    evaluation and are None when nothing was merged. `image_shape` is (C, H, W) when the
    features are raw pixels, so reconstructions can be drawn as images.
    """

    x_train: np.ndarray  # float32, (n_train, n_features)
    y_train: np.ndarray  # int64, (n_train,)
    x_test: np.ndarray
    y_test: np.ndarray
    label_names: tuple[str, ...]
    fine_y_train: np.ndarray | None = None
    fine_y_test: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.label_names)
