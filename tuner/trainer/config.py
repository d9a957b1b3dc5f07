"""The frozen, validated hyperparameters of one trial.

Every field has a docstring-like comment in `FIELD_HELP`; `tuner train --help` and the
search-space validator both read it, so a field is documented once.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

from tuner.errors import TunerError

CONSTRAINTS = ("pairwise", "triplet")
ENCODERS = ("ae", "vae")
DATASETS = ("digits", "mnist", "cifar10", "imagenet")
FEATURE_EXTRACTORS = ("raw", "hog", "resnet")
MINING = ("all", "semihard")
RESNET_WEIGHTS = ("imagenet", "none")
DEVICES = ("auto", "cpu", "cuda")

# The prior art's names, accepted wherever a TrialConfig is built from a mapping.
KEY_ALIASES = {
    "constraint_type": "constraint",
    "encoder_type": "encoder",
    "weight": "mu",
    "num_iters": "iterations",
    "dropout_val": "dropout",
    "keys": "label_names",
}
VALUE_ALIASES = {"encoder": {"embenc": "ae"}}


@dataclass(frozen=True)
class TrialConfig:
    # --- the objective -------------------------------------------------------------
    constraint: str = "pairwise"
    encoder: str = "ae"
    mu: float = 0.5
    margin: float = 1.0
    beta: float = 0.1
    mining: str = "all"
    max_tuples: int | None = None
    # --- the model -----------------------------------------------------------------
    latent_dim: int = 2
    hidden_dims: tuple[int, ...] = (256, 128)
    dropout: float = 0.2
    # --- the optimisation ----------------------------------------------------------
    lr: float = 1e-3
    batch_size: int = 128
    iterations: int = 1500
    eval_every: int = 250
    knn_k: int = 5
    seed: int = 0
    device: str = "auto"
    # --- the data (fixed within a search: featurized once on the driver) -------------
    dataset: str = "digits"
    feature_extractor: str = "raw"
    normalize: bool = False
    composite_labels: tuple[tuple[int, int], ...] | None = None
    label_names: tuple[str, ...] | None = None
    test_size: float = 0.2
    val_size: float | None = None
    split_seed: int = 0
    classes: tuple[str, ...] | None = None
    image_size: int | None = None
    hog_orientations: int = 9
    hog_pixels_per_cell: int = 4
    hog_cells_per_block: int = 2
    resnet_weights: str = "imagenet"
    download: bool = False

    def __post_init__(self) -> None:
        for name, value in _normalized_fields(self).items():
            object.__setattr__(self, name, value)
        _validate(self)

    # ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "config") -> "TrialConfig":
        """Build from a plain mapping (YAML, Ray's param dict, `--set` pairs).

        Unknown keys are user errors with a "did you mean"; the prior art's names are
        accepted as aliases.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for raw_key, value in values.items():
            key = KEY_ALIASES.get(raw_key, raw_key)
            if key not in known:
                raise TunerError(f"{source}: unknown key {raw_key!r}{did_you_mean(raw_key, known)}. "
                                 f"Valid keys: {', '.join(sorted(known))}.")
            if key in kwargs:
                raise TunerError(f"{source}: {key!r} is given twice (once as an alias).")
            kwargs[key] = VALUE_ALIASES.get(key, {}).get(value, value) if isinstance(value, str) else value
        try:
            return cls(**kwargs)
        except TunerError as err:
            raise TunerError(f"{source}: {err}") from None

    def replace(self, **changes: Any) -> "TrialConfig":
        return TrialConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-friendly values (tuples become lists, pairs a mapping)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "composite_labels" and value is not None:
                value = {fine: coarse for fine, coarse in value}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def data_key(self) -> dict[str, Any]:
        """The fields that determine the featurized arrays (and nothing else)."""
        return {name: self.to_dict()[name] for name in DATA_FIELDS}

    @property
    def n_classes_hint(self) -> int | None:
        if self.composite_labels is not None:
            return len({coarse for _, coarse in self.composite_labels})
        return None


DATA_FIELDS = (
    "dataset", "feature_extractor", "normalize", "composite_labels", "label_names",
    "test_size", "val_size", "split_seed", "classes", "image_size", "hog_orientations",
    "hog_pixels_per_cell", "hog_cells_per_block", "resnet_weights", "download",
)

FIELD_HELP: dict[str, str] = {
    "constraint": "label constraint drawn from each batch: pairwise (contrastive) or triplet",
    "encoder": "ae (plain autoencoder) or vae (variational, with a KL prior); 'embenc' = ae",
    "mu": "weight of the metric loss in [0, 1]: mu*metric + (1-mu)*(recon + beta*KL)",
    "margin": "margin of the contrastive / triplet loss (> 0)",
    "beta": "weight of a VAE's KL term per input feature (>= 0); 1 = the ELBO over n_features",
    "mining": "all: every valid pair/triplet of the batch; semihard: only semi-hard negatives",
    "max_tuples": "cap on pairs/triplets per batch, sampled uniformly (null: no cap)",
    "latent_dim": "dimension of the embedding (>= 1)",
    "hidden_dims": "widths of the encoder's hidden layers; the decoder mirrors them",
    "dropout": "dropout probability after each hidden layer, in [0, 1)",
    "lr": "Adam learning rate (> 0)",
    "batch_size": "samples per class-stratified batch; must hold two samples per class",
    "iterations": "optimisation steps",
    "eval_every": "evaluate (kNN accuracy, reconstruction error) every N iterations",
    "knn_k": "neighbours of the kNN classifier on the embeddings",
    "seed": "seed of initialisation and batch sampling: same seed, same metrics on CPU",
    "device": "auto (CUDA when this trial was given a GPU), cpu or cuda",
    "dataset": "digits (scikit-learn, embedded), mnist, cifar10 or imagenet (an image folder)",
    "feature_extractor": "raw pixels in [0, 1], hog (scikit-image) or resnet (ResNet-50 pooled)",
    "normalize": "standardize features with statistics of the training split",
    "composite_labels": "map fine label -> coarse label; constraints use the coarse labels",
    "label_names": "names of the (coarse) labels, in label order, for plots and tables",
    "test_size": "test share of the whole when a dataset has no official test split (digits, one image tree)",
    "val_size": "validation share of the training part, stratified (null: 0.15 of an official training "
                "split; with no official split, as many samples as the test split: digits 60/20/20)",
    "split_seed": "seed of the test and validation splits",
    "classes": "imagenet: subset of class folder names to load (null: all)",
    "image_size": "imagenet: resize images to this square size (null: 32)",
    "hog_orientations": "HOG orientation bins",
    "hog_pixels_per_cell": "HOG cell size in pixels (square)",
    "hog_cells_per_block": "HOG block size in cells (square)",
    "resnet_weights": "imagenet (torchvision's weights, from torch's cache) or none (random)",
    "download": "download mnist/cifar10 into data_dir when missing",
}


def did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ----------------------------------------------------------------------------------
# Normalisation of loosely typed input (YAML, --set) into the declared field types.

def _normalized_fields(cfg: TrialConfig) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        expected = f.default
        new = _coerce(f.name, value, expected)
        if new is not value:
            changes[f.name] = new
    return changes


_INT_FIELDS = {"latent_dim", "batch_size", "iterations", "eval_every", "knn_k", "seed",
               "split_seed", "hog_orientations", "hog_pixels_per_cell", "hog_cells_per_block"}
_FLOAT_FIELDS = {"mu", "margin", "beta", "dropout", "lr", "test_size"}
_BOOL_FIELDS = {"normalize", "download"}
_STR_FIELDS = {"constraint": CONSTRAINTS, "encoder": ENCODERS, "mining": MINING,
               "device": DEVICES, "dataset": DATASETS,
               "feature_extractor": FEATURE_EXTRACTORS, "resnet_weights": RESNET_WEIGHTS}


def _type_error(name: str, value: Any, expected: str) -> TunerError:
    return TunerError(f"{name} = {value!r} ({type(value).__name__}) is not valid: expected {expected}.")


def _as_int(name: str, value: Any) -> int:
    # Ray and numpy hand over numpy integers and integral floats (qrandint, grid values).
    if isinstance(value, bool):
        raise _type_error(name, value, "an integer")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise _type_error(name, value, "an integer") from None
    if not math.isfinite(as_float) or as_float != int(as_float):
        raise _type_error(name, value, "an integer")
    return int(as_float)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or isinstance(value, str):
        raise _type_error(name, value, "a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _type_error(name, value, "a number") from None


def _coerce(name: str, value: Any, default: Any) -> Any:
    if name in _INT_FIELDS:
        out = _as_int(name, value)
        return value if type(value) is int else out
    if name in _FLOAT_FIELDS:
        out = _as_float(name, value)
        return value if type(value) is float else out
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise _type_error(name, value, "true or false")
        return value
    if name in _STR_FIELDS:
        if not isinstance(value, str):
            raise _type_error(name, value, f"one of {', '.join(_STR_FIELDS[name])}")
        return value
    if name == "max_tuples":
        return None if value is None else _as_int(name, value)
    if name == "image_size":
        return None if value is None else _as_int(name, value)
    if name == "val_size":
        return value if value is None or type(value) is float else _as_float(name, value)
    if name == "hidden_dims":
        if not isinstance(value, (list, tuple)) or not value:
            raise _type_error(name, value, "a non-empty list of layer widths, e.g. [256, 128]")
        return tuple(_as_int(name, v) for v in value)
    if name in ("label_names", "classes"):
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or not value:
            raise _type_error(name, value, "a non-empty list of names, or null")
        return tuple(str(v) for v in value)
    if name == "composite_labels":
        return _coerce_composite(value)
    return value


def _coerce_composite(value: Any) -> tuple[tuple[int, int], ...] | None:
    if value is None:
        return None
    pairs = value.items() if isinstance(value, Mapping) else value
    try:
        out = tuple(sorted((_as_int("composite_labels", f), _as_int("composite_labels", c)) for f, c in pairs))
    except (TypeError, ValueError):
        raise _type_error("composite_labels", value, "a mapping fine label -> coarse label, e.g. {0: 0, 1: 0, 2: 1}") from None
    if not out:
        raise _type_error("composite_labels", value, "a non-empty mapping, or null")
    return out


# ----------------------------------------------------------------------------------
# Range and consistency checks.

def _check(ok: bool, name: str, value: Any, valid: str) -> None:
    if not ok:
        raise TunerError(f"{name} = {value!r} is not valid: {valid}.")


def _validate(cfg: TrialConfig) -> None:
    for name, choices in _STR_FIELDS.items():
        value = getattr(cfg, name)
        _check(value in choices, name, value,
               f"expected one of {', '.join(choices)}{did_you_mean(value, choices)}")
    _check(0.0 <= cfg.mu <= 1.0, "mu", cfg.mu, "expected a weight in [0, 1]")
    _check(cfg.margin > 0 and math.isfinite(cfg.margin), "margin", cfg.margin, "expected a number > 0")
    _check(cfg.beta >= 0 and math.isfinite(cfg.beta), "beta", cfg.beta, "expected a number >= 0")
    _check(cfg.max_tuples is None or cfg.max_tuples >= 1, "max_tuples", cfg.max_tuples,
           "expected an integer >= 1, or null for no cap")
    _check(cfg.latent_dim >= 1, "latent_dim", cfg.latent_dim, "expected an integer >= 1")
    _check(all(w >= 1 for w in cfg.hidden_dims), "hidden_dims", list(cfg.hidden_dims),
           "expected layer widths >= 1")
    _check(0.0 <= cfg.dropout < 1.0, "dropout", cfg.dropout, "expected a probability in [0, 1)")
    _check(cfg.lr > 0 and math.isfinite(cfg.lr), "lr", cfg.lr, "expected a learning rate > 0")
    _check(cfg.batch_size >= 4, "batch_size", cfg.batch_size, "expected an integer >= 4")
    n_classes = cfg.n_classes_hint or _DATASET_CLASSES.get(cfg.dataset)
    if n_classes is not None:
        _check(cfg.batch_size >= 2 * n_classes, "batch_size", cfg.batch_size,
               f"a class-stratified batch needs two samples per class: at least {2 * n_classes} "
               f"for {n_classes} classes of {cfg.dataset}")
    _check(cfg.iterations >= 1, "iterations", cfg.iterations, "expected an integer >= 1")
    _check(cfg.eval_every >= 1, "eval_every", cfg.eval_every, "expected an integer >= 1")
    _check(cfg.knn_k >= 1, "knn_k", cfg.knn_k, "expected an integer >= 1")
    _check(0.0 < cfg.test_size < 1.0, "test_size", cfg.test_size, "expected a share in (0, 1)")
    _check(cfg.val_size is None or 0.0 < cfg.val_size < 1.0, "val_size", cfg.val_size,
           "expected a share of the training part in (0, 1), or null for the default")
    _check(cfg.image_size is None or cfg.image_size >= 8, "image_size", cfg.image_size,
           "expected an integer >= 8, or null")
    _check(cfg.hog_orientations >= 1, "hog_orientations", cfg.hog_orientations, "expected an integer >= 1")
    _check(cfg.hog_pixels_per_cell >= 1, "hog_pixels_per_cell", cfg.hog_pixels_per_cell, "expected an integer >= 1")
    _check(cfg.hog_cells_per_block >= 1, "hog_cells_per_block", cfg.hog_cells_per_block, "expected an integer >= 1")
    if cfg.label_names is not None and n_classes is not None:
        _check(len(cfg.label_names) == n_classes, "label_names", list(cfg.label_names),
               f"expected {n_classes} names, one per {'coarse ' if cfg.composite_labels else ''}label")


# Known class counts let a bad batch size fail at config time, before data loads.
_DATASET_CLASSES = {"digits": 10, "mnist": 10, "cifar10": 10}
