"""Which training images keep their labels: `labels_per_class` or `labeled_fraction`, drawn in
the trial from the training split (so a search can range over N), the same for every trial
of a split_seed. Pure numpy.

Each class's images are put in one seeded order and the first N keep their labels, so a
smaller N labels a subset of what a larger one labels: a search over N compares nested sets.
"""

from __future__ import annotations

import numpy as np

from tuner.core.config import TrialConfig
from tuner.errors import TunerError


def labeled_counts(
    y: np.ndarray, labels_per_class: int | None, labeled_fraction: float | None
) -> np.ndarray:
    """Labels kept per class (class k at position k); a TunerError when N exceeds a class."""
    counts = np.bincount(np.asarray(y))
    if labeled_fraction is not None:
        return np.where(
            counts > 0, np.maximum(1, np.ceil(labeled_fraction * counts - 1e-9)), 0
        ).astype(np.int64)
    assert labels_per_class is not None
    present = counts[counts > 0]
    if labels_per_class > present.min():
        smallest = int(np.flatnonzero(counts == present.min())[0])
        raise TunerError(
            f"labels_per_class = {labels_per_class} is not valid: the training split's smallest "
            f"class ({smallest}) has {int(present.min())} images. Give at most "
            f"{int(present.min())}, or labeled_fraction (a share of each class).",
            key="labels_per_class",
        )
    return np.where(counts > 0, labels_per_class, 0).astype(np.int64)


def labeled_indices(
    y: np.ndarray, labels_per_class: int | None, labeled_fraction: float | None, seed: int
) -> np.ndarray | None:
    """Sorted rows of `y` that keep their labels, class-stratified and seeded; None: every row."""
    if labels_per_class is None and labeled_fraction is None:
        return None
    y = np.asarray(y)
    counts = labeled_counts(y, labels_per_class, labeled_fraction)
    rng = np.random.default_rng(seed)
    chosen = []
    for label, keep in enumerate(counts):
        rows = np.flatnonzero(y == label)
        if len(rows):  # one draw per class present, in class order: the same order for every N
            chosen.append(rows[rng.permutation(len(rows))[:keep]])
    return np.sort(np.concatenate(chosen))


def labeled_rows_of(cfg: TrialConfig, y_train: np.ndarray) -> np.ndarray | None:
    """`labeled_indices` for a trial (seeded by split_seed: fixed within a search)."""
    return labeled_indices(y_train, cfg.labels_per_class, cfg.labeled_fraction, cfg.split_seed)
