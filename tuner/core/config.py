"""The frozen, validated hyperparameters of one trial.

Each field carries its help beside it (`setting(default, help)`); `tuner train --help`, the
search-file checks and the conversion of loose YAML/--set values all read the field itself
(its annotation, help, choices, and whether it is a data setting), so a new setting is
written in one place.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuner.core.config_values import check_choices, coerce, kind_of, validate
from tuner.core.datasets import DATASET_NAMES, DATASETS, DEFAULT_IMAGE_SIZE, listed
from tuner.errors import TunerError, did_you_mean

CONSTRAINTS = ("pairwise", "triplet")
ENCODERS = ("ae", "vae")
FEATURE_EXTRACTORS = ("raw", "hog", "resnet")
MINING = ("all", "semihard")
RESNET_WEIGHTS = ("imagenet", "none")
DEVICES = ("auto", "cpu", "cuda")
ARCHITECTURES = ("mlp", "conv")
DECODER_OUTPUTS = ("linear", "sigmoid")
LR_SCHEDULES = ("constant", "cosine")
TORCH_COMPILE = ("none", "default", "reduce-overhead", "max-autotune")

# The prior work's names, accepted wherever a TrialConfig is built from a mapping.
KEY_ALIASES = {
    "constraint_type": "constraint",
    "encoder_type": "encoder",
    "weight": "mu",
    "num_iters": "iterations",
    "dropout_val": "dropout",
    "keys": "label_names",
}
VALUE_ALIASES = {"encoder": {"embenc": "ae"}}


def setting(
    default: Any, help: str, *, choices: tuple[str, ...] | None = None, data: bool = False
) -> Any:
    """A TrialConfig field with its help text; `data` marks what the featurized arrays depend on."""
    return field(default=default, metadata={"help": help, "choices": choices, "data": data})


def data_setting(default: Any, help: str, *, choices: tuple[str, ...] | None = None) -> Any:
    """A data setting: fixed within a search, since the data is featurized once, on the driver."""
    return setting(default, help, choices=choices, data=True)


@dataclass(frozen=True)
class TrialConfig:
    # --- the objective
    constraint: str = setting(
        "pairwise",
        "label constraint drawn from each batch: pairwise (contrastive) or triplet",
        choices=CONSTRAINTS,
    )
    encoder: str = setting(
        "ae",
        "ae (plain autoencoder) or vae (variational, with a KL prior); 'embenc' = ae",
        choices=ENCODERS,
    )
    mu: float = setting(
        0.5, "weight of the metric loss in [0, 1]: mu*metric + (1-mu)*(recon + beta*KL)"
    )
    margin: float = setting(1.0, "margin of the contrastive / triplet loss (> 0)")
    beta: float = setting(
        0.1, "weight of a VAE's KL term per input feature (>= 0); 1 = the ELBO over n_features"
    )
    mining: str = setting(
        "all",
        "all: every valid pair/triplet of the batch; semihard: only semi-hard negatives",
        choices=MINING,
    )
    max_tuples: int | None = setting(
        None, "cap on pairs/triplets per batch, sampled uniformly (null: no cap)"
    )
    # --- weak supervision: few labels (constraints: FILE, a data setting, replaces them by
    # judgments)
    labels_per_class: int | None = setting(
        None,
        "keep the labels of this many training images per class (a seeded, class-stratified "
        "subset, the same for every trial of a split_seed); the rest train the reconstruction only "
        "(null: all)",
    )
    labeled_fraction: float | None = setting(
        None,
        "as labels_per_class, as a share in (0, 1] of each class (at least one each); not both",
    )
    unlabeled_per_batch: int | None = setting(
        None,
        "unlabeled images added to each batch for the reconstruction (and KL) term only, with "
        "labels_per_class, labeled_fraction or constraints (null: batch_size; 0: none)",
    )
    # --- the model
    latent_dim: int = setting(2, "dimension of the embedding (>= 1)")
    hidden_dims: tuple[int, ...] = setting(
        (256, 128), "widths of the encoder's hidden layers; the decoder mirrors them"
    )
    dropout: float = setting(0.2, "dropout probability after each hidden layer, in [0, 1)")
    architecture: str = setting(
        "mlp",
        "mlp, or conv (raw image pixels): stride-2 convolutions, one per conv_channels width, "
        "before the hidden_dims dense layers; the decoder mirrors them",
        choices=ARCHITECTURES,
    )
    conv_channels: tuple[int, ...] = setting(
        (32, 64), "architecture conv: channels of each stride-2 conv layer"
    )
    decoder_output: str = setting(
        "linear",
        "linear, or sigmoid: reconstructions squashed into (0, 1), the range of raw pixels",
        choices=DECODER_OUTPUTS,
    )
    # --- the optimisation
    augment_shift: float = setting(
        0.0,
        "raw image pixels: shift each training image by up to this many pixels each way, at random "
        "(0: off); the unshifted image stays the reconstruction target",
    )
    augment_degrees: float = setting(
        0.0,
        "raw image pixels: rotate each training image by up to this many degrees, at random (0: "
        "off)",
    )
    lr: float = setting(1e-3, "Adam learning rate (> 0)")
    lr_schedule: str = setting(
        "constant",
        "constant, or cosine: from lr down to 0 at the last iteration",
        choices=LR_SCHEDULES,
    )
    weight_decay: float = setting(0.0, "decoupled weight decay (AdamW) when > 0; 0: plain Adam")
    batch_size: int = setting(
        128, "samples per class-stratified batch; must hold two samples per class"
    )
    iterations: int = setting(1500, "optimisation steps")
    eval_every: int = setting(
        250, "evaluate (kNN accuracy, reconstruction error) every N iterations"
    )
    knn_k: int = setting(5, "neighbours of the kNN classifier on the embeddings")
    seed: int = setting(
        0, "seed of initialisation and batch sampling: same seed, same metrics on CPU"
    )
    device: str = setting(
        "auto", "auto (CUDA when this trial was given a GPU), cpu or cuda", choices=DEVICES
    )
    torch_compile: str = setting(
        "none",
        "torch.compile the model with this mode (none: eager). reduce-overhead adds CUDA graphs on "
        "a GPU. Slower on the CPU (benchmarks/bench_gpu.py); the first steps pay the compile",
        choices=TORCH_COMPILE,
    )
    # --- the data (fixed within a search: featurized once on the driver)
    dataset: str = data_setting(
        "digits", listed([d.about for d in DATASETS.values()]), choices=DATASET_NAMES
    )
    feature_extractor: str = data_setting(
        "raw",
        "raw pixels in [0, 1], hog (scikit-image) or resnet (ResNet-50 pooled)",
        choices=FEATURE_EXTRACTORS,
    )
    normalize: bool = data_setting(
        False, "standardize features with statistics of the training split"
    )
    composite_labels: tuple[tuple[int, int], ...] | None = data_setting(
        None, "map fine label -> coarse label; constraints use the coarse labels"
    )
    label_names: tuple[str, ...] | None = data_setting(
        None, "names of the (coarse) labels, in label order, for plots and tables"
    )
    test_size: float = data_setting(
        0.2,
        "test share of the whole when a dataset has no official test split ("
        + ", ".join(
            [*(d.name for d in DATASETS.values() if d.official_test == "no"), "one image tree"]
        )
        + ")",
    )
    val_size: float | None = data_setting(
        None,
        "validation share of the training part, stratified (null: 0.15 of an official training "
        "split; with no official split, as many samples as the test split: digits 60/20/20)",
    )
    split_seed: int = data_setting(0, "seed of the test and validation splits")
    classes: tuple[str, ...] | None = data_setting(
        None, "imagenet: subset of class folder names to load (null: all)"
    )
    image_size: int | None = data_setting(
        None, f"imagenet: resize images to this square size (null: {DEFAULT_IMAGE_SIZE})"
    )
    hog_orientations: int = data_setting(9, "HOG orientation bins")
    hog_pixels_per_cell: int = data_setting(4, "HOG cell size in pixels (square)")
    hog_cells_per_block: int = data_setting(2, "HOG block size in cells (square)")
    resnet_weights: str = data_setting(
        "imagenet",
        "imagenet (torchvision's weights, from torch's cache) or none (random)",
        choices=RESNET_WEIGHTS,
    )
    download: bool = data_setting(
        False,
        f"download {'/'.join(d.name for d in DATASETS.values() if d.downloadable)} into data_dir "
        "when missing",
    )
    constraints: str | None = data_setting(
        None,
        "CSV of judgments that train the metric term instead of labels: header a,b,similar (pairs) "
        "or anchor,positive,negative (triplets); items are indices in the dataset's training order "
        "(an image folder: paths relative to its class root); a seeded val_size share of rows "
        "scores constraint_accuracy",
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            new = coerce(f.name, value, HINTS[f.name], f.metadata["choices"])
            if new is not value:
                object.__setattr__(self, f.name, new)
        for f in dataclasses.fields(self):
            if f.metadata["choices"]:
                check_choices(f.name, getattr(self, f.name), f.metadata["choices"])
        validate(self)

    # ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "config") -> TrialConfig:
        """Build from a plain mapping (YAML, Ray's param dict, `--set` pairs).

        Unknown keys are user errors with a "did you mean"; the prior work's names are
        accepted as aliases.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for raw_key, value in values.items():
            key = KEY_ALIASES.get(raw_key, raw_key)
            if key not in known:
                raise TunerError(
                    f"{source}: unknown key {raw_key!r}{did_you_mean(raw_key, known)}. "
                    f"Valid keys: {', '.join(sorted(known))}.",
                    key=raw_key,
                )
            if key in kwargs:
                raise TunerError(f"{source}: {key!r} is given twice (once as an alias).", key=key)
            kwargs[key] = (
                VALUE_ALIASES.get(key, {}).get(value, value) if isinstance(value, str) else value
            )
        try:
            return cls(**kwargs)
        except TunerError as err:
            raise TunerError(f"{source}: {err}", key=err.key) from None

    def replace(self, **changes: Any) -> TrialConfig:
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


FIELDS = {f.name: f for f in dataclasses.fields(TrialConfig)}
DATA_FIELDS = tuple(name for name, f in FIELDS.items() if f.metadata["data"])
FIELD_HELP = {name: f.metadata["help"] for name, f in FIELDS.items()}

HINTS = typing.get_type_hints(TrialConfig)


def field_kind(name: str) -> str:
    """int, float, bool, str, ints, names or pairs: what a search range over the field may be."""
    return kind_of(HINTS[name])[0]
