"""Cheap steps after featurizing: split, standardize, merge labels, name labels. Pure functions."""

from __future__ import annotations

import math

import numpy as np

from tuner.core.datasets import DEFAULT_VAL_SHARE
from tuner.errors import TunerError


def stratified_split(
    x: np.ndarray, y: np.ndarray, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A seeded split that keeps each class's share in train and test: (x_tr, y_tr, x_te, y_te)."""
    from sklearn.model_selection import train_test_split

    try:
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=test_size, random_state=seed, stratify=y
        )
    except ValueError as err:
        counts = np.bincount(y)
        raise TunerError(
            f"test_size = {test_size}: cannot split {len(y)} samples of {len(counts)} classes "
            f"stratified (smallest class: {counts.min()} samples; each class needs one in "
            f"train and one in test): {err}"
        ) from None
    return x_tr, y_tr, x_te, y_te


def standardize(x_train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Subtract the train mean and divide by the train std, per feature (std 0 -> 1); the
    other splits are scaled with the train statistics, so nothing is learned from them."""
    mean, std = standardization_stats(x_train)
    return tuple(apply_standardization(x, mean, std) for x in (x_train, *others))


def standardization_stats(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature float64 mean and std of the training features (std 0 -> 1).

    Kept apart from `standardize` so that a saved model can carry them and apply them to new data.
    """
    mean = x_train.mean(axis=0, dtype=np.float64)
    std = x_train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return mean, std


def apply_standardization(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    # float64 arithmetic, then float32: a saved model reproduces the training features bit for bit.
    return ((x - mean) / std).astype(np.float32)


def validation_count(val_size: float | None, n_train: int, n_test: int, official_test: bool) -> int:
    """How many training samples to hold out for validation.

    An explicit `val_size` is a share of the training part. None: 0.15 of an official training
    split; with no official split, as many as the test split (digits: 60 / 20 / 20).
    """
    if val_size is None:
        return math.ceil(DEFAULT_VAL_SHARE * n_train) if official_test else n_test
    return math.ceil(val_size * n_train)


def validation_split(
    x: np.ndarray, y: np.ndarray, n_val: int, seed: int, val_size: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A seeded, stratified hold-out of `n_val` samples: (x_tr, y_tr, x_val, y_val).

    At least one sample per class is held out, so every class is measured; at least one per
    class must stay in train.
    """
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    n_classes = int(np.count_nonzero(counts))
    n_val = max(n_val, n_classes)
    smallest = int(counts[counts > 0].min())
    if len(y) - n_val < n_classes or smallest < 2:
        shown = "null" if val_size is None else val_size
        raise TunerError(
            f"val_size = {shown}: cannot hold out {n_val} of {len(y)} training samples of "
            f"{n_classes} classes stratified (smallest class: {smallest} samples; each class "
            f"needs one in train and one in validation). Give a smaller val_size (a share "
            f"of the training part, in (0, 1)) or more data."
        )
    x_tr, x_val, y_tr, y_val = train_test_split(
        x, y, test_size=n_val, random_state=seed, stratify=y
    )
    return x_tr, y_tr, x_val, y_val


def compose_labels(
    y: np.ndarray, pairs: tuple[tuple[int, int], ...], fine_names: tuple[str, ...]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map fine labels to coarse ones numbered 0..k-1 in sorted order of the coarse values.

    Returns the coarse labels and default coarse names (a coarse class's fine names joined by
    "+"). Every fine label of the dataset must be mapped, and only those.
    """
    mapping = dict(pairs)
    fine = range(len(fine_names))
    unknown = sorted(set(mapping) - set(fine))
    if unknown:
        raise TunerError(
            f"composite_labels maps {unknown}, which are not labels of this dataset: "
            f"its labels are 0..{len(fine_names) - 1} ({', '.join(fine_names)})."
        )
    missing = [f for f in fine if f not in mapping]
    if missing:
        raise TunerError(
            f"composite_labels does not map the fine labels {missing} "
            f"({', '.join(fine_names[f] for f in missing)}): every label of the dataset "
            f"needs a coarse label, e.g. {{{missing[0]}: 0}}."
        )
    coarse_values = sorted(set(mapping.values()))
    renumber = {c: i for i, c in enumerate(coarse_values)}
    lookup = np.array([renumber[mapping[f]] for f in fine], dtype=np.int64)
    names = tuple("+".join(fine_names[f] for f in fine if mapping[f] == c) for c in coarse_values)
    return lookup[y], names


def resolve_label_names(
    defaults: tuple[str, ...], override: tuple[str, ...] | None
) -> tuple[str, ...]:
    if override is None:
        return defaults
    if len(override) != len(defaults):
        raise TunerError(
            f"label_names = {list(override)} has {len(override)} names, but the data has "
            f"{len(defaults)} labels ({', '.join(defaults)}): give one name per label, in order."
        )
    return tuple(override)
