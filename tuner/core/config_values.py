"""Loose values (YAML, --set, Ray's numpy numbers) into a TrialConfig field's declared type, and
the range and consistency checks of a whole config.

The conversion is chosen from the field's annotation, so a new setting needs no entry here
unless it has a range to check. Errors carry the field's name (`TunerError.key`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from tuner.core.datasets import DATASETS
from tuner.errors import TunerError, did_you_mean

# Seeds go to numpy's RandomState (scikit-learn's splits, Optuna's sampler), which takes 32 bits.
MAX_SEED = 2**32 - 1
# Caps no real run comes near; beyond them a typo (10**14) meets the allocator, not a message.
MAX_WIDTH = 65536  # latent_dim, hidden_dims and conv_channels
MAX_BATCH_SIZE = 2**20
MAX_IMAGE_SIZE = 4096
# Every int setting reaches torch or numpy, whose integers are 64-bit.
INT64_MAX = 2**63 - 1


def kind_of(hint: Any) -> tuple[str, bool]:
    """(kind, optional) of an annotation: int, float, bool or str; ints (tuple[int, ...]),
    names (tuple[str, ...]) or pairs (tuple[tuple[int, int], ...])."""
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if hint in (int, float, bool, str):
        return hint.__name__, optional
    item = typing.get_args(hint)[0]
    return {int: "ints", str: "names"}.get(item, "pairs"), optional


def coerce(name: str, value: Any, hint: Any, choices: tuple[str, ...] | None = None) -> Any:
    """`value` as the field's type; the same object when it already is one (the frozen
    dataclass then has nothing to replace)."""
    kind, optional = kind_of(hint)
    if value is None and optional:
        return None
    if kind in ("int", "float"):
        out = _as_int(name, value) if kind == "int" else _as_float(name, value)
        return value if type(value) is type(out) else out
    if kind in ("bool", "str"):
        if not isinstance(value, bool if kind == "bool" else str):
            # YAML 1.1 reads unquoted yes/no/on/off as booleans: `torch_compile: off` arrives as
            # False.
            quote = (
                " (YAML reads unquoted yes/no/on/off as true/false: quote the word)"
                if isinstance(value, bool)
                else ""
            )
            raise _type_error(
                name,
                value,
                "true or false"
                if kind == "bool"
                else f"one of {', '.join(choices)}{quote}"
                if choices
                else f"a name{quote}",
            )
        return value
    if kind == "pairs":
        return _as_pairs(name, value)
    if not isinstance(value, (list, tuple)) or not value:
        expected = (
            "a non-empty list of layer widths, e.g. [256, 128]"
            if kind == "ints"
            else "a non-empty list of names"
        )
        raise _type_error(name, value, expected + (", or null" if optional else ""))
    return (
        tuple(_as_int(name, v) for v in value) if kind == "ints" else tuple(str(v) for v in value)
    )


def _type_error(name: str, value: Any, expected: str) -> TunerError:
    return TunerError(
        f"{name} = {value!r} ({type(value).__name__}) is not valid: expected {expected}.", key=name
    )


def _as_int(name: str, value: Any) -> int:
    # Ray and numpy hand over numpy integers and integral floats (qrandint, grid values);
    # JSON mappings (composite_labels) have text keys.
    if isinstance(value, bool):
        raise _type_error(name, value, "an integer")
    try:
        as_float = float(value)
    except (TypeError, ValueError, OverflowError):
        raise _type_error(name, value, "an integer") from None
    if not math.isfinite(as_float) or as_float != int(as_float):
        raise _type_error(name, value, "an integer")
    return int(value) if isinstance(value, int) else int(as_float)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, (bool, str)):
        raise _type_error(name, value, "a number")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise _type_error(name, value, "a number") from None


def _as_pairs(name: str, value: Any) -> tuple[tuple[int, int], ...]:
    pairs = value.items() if isinstance(value, Mapping) else value
    try:
        out = tuple(sorted((_as_int(name, f), _as_int(name, c)) for f, c in pairs))
    except (TypeError, ValueError):
        raise _type_error(
            name, value, "a mapping fine label -> coarse label, e.g. {0: 0, 1: 0, 2: 1}"
        ) from None
    if not out:
        raise _type_error(name, value, "a non-empty mapping, or null")
    # A list of pairs (or keys such as 0 and "0") can name a fine label twice; a mapping keeps one.
    for (fine, coarse), (next_fine, next_coarse) in zip(out, out[1:]):
        if fine == next_fine:
            raise TunerError(
                f"{name} = {value!r} is not valid: fine label {fine} is given twice (to coarse "
                f"labels {coarse} and {next_coarse}); map each fine label to one coarse label.",
                key=name,
            )
    return out


def _check(ok: bool, name: str, value: Any, valid: str) -> None:
    if not ok:
        raise TunerError(f"{name} = {value!r} is not valid: {valid}.", key=name)


def check_choices(name: str, value: Any, choices: tuple[str, ...]) -> None:
    _check(
        value in choices,
        name,
        value,
        f"expected one of {', '.join(choices)}{did_you_mean(value, choices)}",
    )


def validate(cfg: Any) -> None:
    """Ranges and consistency; `cfg` is a TrialConfig whose values already have their types."""
    _check(0.0 <= cfg.mu <= 1.0, "mu", cfg.mu, "expected a weight in [0, 1]")
    _check(
        cfg.margin > 0 and math.isfinite(cfg.margin), "margin", cfg.margin, "expected a number > 0"
    )
    _check(cfg.beta >= 0 and math.isfinite(cfg.beta), "beta", cfg.beta, "expected a number >= 0")
    _check(cfg.lr > 0 and math.isfinite(cfg.lr), "lr", cfg.lr, "expected a learning rate > 0")
    _check(
        cfg.weight_decay >= 0 and math.isfinite(cfg.weight_decay),
        "weight_decay",
        cfg.weight_decay,
        "expected a number >= 0",
    )
    _check(
        cfg.max_tuples is None or cfg.max_tuples >= 1,
        "max_tuples",
        cfg.max_tuples,
        "expected an integer >= 1, or null for no cap",
    )
    for name in (
        "iterations",
        "eval_every",
        "knn_k",
        "hog_orientations",
        "hog_pixels_per_cell",
        "hog_cells_per_block",
    ):
        _check(getattr(cfg, name) >= 1, name, getattr(cfg, name), "expected an integer >= 1")
    for name in ("seed", "split_seed"):
        _check(
            0 <= getattr(cfg, name) <= MAX_SEED,
            name,
            getattr(cfg, name),
            f"expected an integer in 0..{MAX_SEED} (2**32 - 1, what numpy's seeding takes)",
        )
    _check(
        1 <= cfg.latent_dim <= MAX_WIDTH,
        "latent_dim",
        cfg.latent_dim,
        f"expected an integer in 1..{MAX_WIDTH}",
    )
    _check(
        all(1 <= w <= MAX_WIDTH for w in cfg.hidden_dims),
        "hidden_dims",
        list(cfg.hidden_dims),
        f"expected layer widths in 1..{MAX_WIDTH}",
    )
    _check(0.0 <= cfg.dropout < 1.0, "dropout", cfg.dropout, "expected a probability in [0, 1)")
    _check(
        len(cfg.conv_channels) >= 1 and all(1 <= w <= MAX_WIDTH for w in cfg.conv_channels),
        "conv_channels",
        list(cfg.conv_channels),
        f"expected one channel width in 1..{MAX_WIDTH} per conv layer",
    )
    _check(
        cfg.architecture == "mlp" or cfg.feature_extractor == "raw",
        "architecture",
        cfg.architecture,
        f"conv reads images, and feature_extractor {cfg.feature_extractor} gives feature vectors: "
        f"use architecture: mlp, or feature_extractor: raw",
    )
    for name in ("augment_shift", "augment_degrees"):
        value = getattr(cfg, name)
        _check(value >= 0 and math.isfinite(value), name, value, "expected a number >= 0 (0: off)")
        _check(
            value == 0 or cfg.feature_extractor == "raw",
            name,
            value,
            f"it moves image pixels, and feature_extractor {cfg.feature_extractor} gives feature "
            "vectors: set it to 0, or use feature_extractor: raw",
        )
    _check(
        cfg.decoder_output != "sigmoid" or (cfg.feature_extractor == "raw" and not cfg.normalize),
        "decoder_output",
        cfg.decoder_output,
        "sigmoid squashes reconstructions into (0, 1), the range of raw pixels; "
        + (
            "standardized features (normalize: true) lie mostly outside it: use normalize: false, "
            if cfg.normalize
            else f"{cfg.feature_extractor} features are not pixels: use feature_extractor: raw, "
        )
        + "or decoder_output: linear",
    )
    _check(0.0 < cfg.test_size < 1.0, "test_size", cfg.test_size, "expected a share in (0, 1)")
    _check(
        cfg.val_size is None or 0.0 < cfg.val_size < 1.0,
        "val_size",
        cfg.val_size,
        "expected a share of the training part in (0, 1), or null for the default",
    )
    _check(
        cfg.image_size is None or 8 <= cfg.image_size <= MAX_IMAGE_SIZE,
        "image_size",
        cfg.image_size,
        f"expected an integer in 8..{MAX_IMAGE_SIZE}, or null",
    )
    _validate_batch_and_labels(cfg)
    _check_int64(cfg)


def _check_int64(cfg: Any) -> None:
    """Last, so that a capped field says its own range first: no other int setting has a cap,
    but each reaches torch or numpy, whose integers are 64-bit."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        items = value if isinstance(value, tuple) else (value,)
        numbers = [
            n
            for item in items
            for n in (item if isinstance(item, tuple) else (item,))
            if isinstance(n, int) and not isinstance(n, bool)
        ]
        _check(
            all(-INT64_MAX - 1 <= n <= INT64_MAX for n in numbers),
            f.name,
            list(value) if isinstance(value, tuple) else value,
            f"expected integers within 64 bits (-2**63 to {INT64_MAX})",
        )


def check_batch_for_classes(batch_size: int, n_classes: int, dataset: str) -> None:
    """Two samples of every class in each batch, or anchors go without positives (a 100-class
    folder at batch 128 left most without one). Checked from the config where the class count is
    known beforehand, and again once the data is loaded (an image folder's classes)."""
    _check(
        batch_size >= 2 * n_classes,
        "batch_size",
        batch_size,
        f"a class-stratified batch needs two samples per class: at least {2 * n_classes} "
        f"for {n_classes} classes of {dataset}",
    )


def _validate_weak_supervision(cfg: Any) -> None:
    _check(
        cfg.labels_per_class is None or cfg.labels_per_class >= 1,
        "labels_per_class",
        cfg.labels_per_class,
        "expected an integer >= 1, or null for every label",
    )
    _check(
        cfg.labeled_fraction is None or 0.0 < cfg.labeled_fraction <= 1.0,
        "labeled_fraction",
        cfg.labeled_fraction,
        "expected a share in (0, 1], or null for every label",
    )
    _check(
        cfg.labels_per_class is None or cfg.labeled_fraction is None,
        "labeled_fraction",
        cfg.labeled_fraction,
        f"labels_per_class ({cfg.labels_per_class}) is set too: give one of the two, set the "
        "other to null",
    )
    for name in ("labels_per_class", "labeled_fraction"):
        _check(
            getattr(cfg, name) is None or cfg.constraints is None,
            name,
            getattr(cfg, name),
            f"constraints ({cfg.constraints}) replaces labels in training: set {name} to null, or "
            f"constraints to null",
        )
    _check(
        cfg.unlabeled_per_batch is None or 0 <= cfg.unlabeled_per_batch <= MAX_BATCH_SIZE,
        "unlabeled_per_batch",
        cfg.unlabeled_per_batch,
        f"expected an integer in 0..{MAX_BATCH_SIZE}, or null (as many as batch_size)",
    )


def _validate_batch_and_labels(cfg: Any) -> None:
    _check(
        4 <= cfg.batch_size <= MAX_BATCH_SIZE,
        "batch_size",
        cfg.batch_size,
        f"expected an integer in 4..{MAX_BATCH_SIZE} (2**20)",
    )
    _validate_weak_supervision(cfg)
    # Known class counts let a bad batch size fail at config time, before data loads.
    facts = DATASETS.get(cfg.dataset)
    n_classes = cfg.n_classes_hint or (facts.n_classes if facts else None)
    # judgments' batches are not class-stratified
    if n_classes is not None and cfg.constraints is None:
        check_batch_for_classes(cfg.batch_size, n_classes, cfg.dataset)
    if cfg.label_names is not None and n_classes is not None:
        _check(
            len(cfg.label_names) == n_classes,
            "label_names",
            list(cfg.label_names),
            f"expected {n_classes} names, one per {'coarse ' if cfg.composite_labels else ''}label",
        )
