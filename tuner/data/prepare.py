"""Cheap steps after featurizing: split, standardize, merge labels, name labels. Pure functions."""

from __future__ import annotations

import numpy as np

from tuner.errors import TunerError


def stratified_split(x: np.ndarray, y: np.ndarray, test_size: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A seeded split that keeps each class's share in train and test: (x_tr, y_tr, x_te, y_te)."""
    from sklearn.model_selection import train_test_split

    try:
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    except ValueError as err:
        counts = np.bincount(y)
        raise TunerError(f"test_size = {test_size}: cannot split {len(y)} samples of {len(counts)} classes "
                         f"stratified (smallest class: {counts.min()} samples; each class needs one in "
                         f"train and one in test): {err}") from None
    return x_tr, y_tr, x_te, y_te


def standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the train mean and divide by the train std, per feature (std 0 -> 1)."""
    mean, std = standardization_stats(x_train)
    return apply_standardization(x_train, mean, std), apply_standardization(x_test, mean, std)


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


def compose_labels(y: np.ndarray, pairs: tuple[tuple[int, int], ...],
                   fine_names: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map fine labels to coarse ones numbered 0..k-1 in sorted order of the coarse values.

    Returns the coarse labels and default coarse names (a coarse class's fine names joined by
    "+"). Every fine label of the dataset must be mapped, and only those.
    """
    mapping = dict(pairs)
    fine = range(len(fine_names))
    unknown = sorted(set(mapping) - set(fine))
    if unknown:
        raise TunerError(f"composite_labels maps {unknown}, which are not labels of this dataset: "
                         f"its labels are 0..{len(fine_names) - 1} ({', '.join(fine_names)}).")
    missing = [f for f in fine if f not in mapping]
    if missing:
        raise TunerError(f"composite_labels does not map the fine labels {missing} "
                         f"({', '.join(fine_names[f] for f in missing)}): every label of the dataset "
                         f"needs a coarse label, e.g. {{{missing[0]}: 0}}.")
    coarse_values = sorted(set(mapping.values()))
    renumber = {c: i for i, c in enumerate(coarse_values)}
    lookup = np.array([renumber[mapping[f]] for f in fine], dtype=np.int64)
    names = tuple("+".join(fine_names[f] for f in fine if mapping[f] == c) for c in coarse_values)
    return lookup[y], names


def resolve_label_names(defaults: tuple[str, ...], override: tuple[str, ...] | None) -> tuple[str, ...]:
    if override is None:
        return defaults
    if len(override) != len(defaults):
        raise TunerError(f"label_names = {list(override)} has {len(override)} names, but the data has "
                         f"{len(defaults)} labels ({', '.join(defaults)}): give one name per label, in order.")
    return tuple(override)
