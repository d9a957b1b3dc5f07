"""The arrays one search trains on: what every loader produces and every trial reads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Judgments:
    """A `constraints:` file placed on the splits (data/judgments.py): what trains the metric term
    in place of labels, and what scores constraint_accuracy.

    `train` rows index x_train: (i, j) pairs with `train_similar`, or (anchor, positive, negative)
    triplets. `held` rows index x_train and x_val stacked (validation after train), a seeded share
    of the file kept out of training. `dropped`: rows naming a test image, or training rows naming
    a validation image."""

    kind: str
    train: np.ndarray
    held: np.ndarray
    train_similar: np.ndarray | None
    held_similar: np.ndarray | None
    dropped: int
    source: str


@dataclass(frozen=True)
class FeatureSet:
    """Featurized train / validation / test splits.

    Trials train on train and are measured on validation; the test split is read once, after
    a search, for the trials it selected. What the driver ships to trials is
    `without_test()`: the test arrays are None there, so no trial can select by them.
    `y_*` are the labels the constraints use (coarse labels when `composite_labels`
    merged classes, numbered 0..n_classes-1); `fine_y_*` keep the original labels for
    evaluation and are None when nothing was merged. `image_shape` is (C, H, W) when the
    features are raw pixels, so reconstructions can be drawn as images.
    """

    x_train: np.ndarray  # float32, (n_train, n_features)
    y_train: np.ndarray  # int64, (n_train,)
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    label_names: tuple[str, ...]
    fine_y_train: np.ndarray | None = None
    fine_y_val: np.ndarray | None = None
    fine_y_test: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None
    judgments: Judgments | None = None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    @property
    def has_test(self) -> bool:
        return self.x_test is not None

    def without_test(self) -> FeatureSet:
        """A copy without the test split (the arrays are shared, not copied)."""
        return dataclasses.replace(self, x_test=None, y_test=None, fine_y_test=None)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(x, y, fine_y) of "train", "val" or "test"."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split = {name!r}: expected train, val or test")
        x, y, fine = (getattr(self, f"{prefix}_{name}") for prefix in ("x", "y", "fine_y"))
        if x is None or y is None:
            raise ValueError(f"this FeatureSet has no {name} split (made by without_test())")
        return x, y, fine
