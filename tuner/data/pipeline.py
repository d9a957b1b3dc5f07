"""`load_features`: locate the data, featurize it (or read the cache), then split, merge,
standardize.

The cache holds the expensive part only, the un-normalized features of the whole dataset
(official splits kept apart), keyed by the data files and the extractor's parameters. The
split, composite labels, label names and standardization are recomputed on every call:
they take milliseconds, and changing them then needs no new extraction.
"""

from __future__ import annotations

import dataclasses
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tuner.core.config import TrialConfig
from tuner.data.cache import Arrays, default_cache_dir, load_or_build
from tuner.data.features import FeatureSet
from tuner.data.hog import hog_features
from tuner.data.imagefolder import imagenet_source
from tuner.data.judgments import place_judgments, read_judgments
from tuner.data.prepare import (
    compose_labels,
    resolve_label_names,
    standardize,
    stratified_split,
    validation_count,
    validation_split,
)
from tuner.data.resnet import resnet_features, resolve_weights, weights_name
from tuner.data.sources import (
    ImageData,
    Source,
    cifar10_source,
    default_data_dir,
    digits_source,
    mnist_source,
)
from tuner.errors import TunerError


def load_features(
    cfg: TrialConfig,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> FeatureSet:
    """The train/validation/test features `cfg`'s data fields describe, from the cache when it has
    them.

    `data_dir` (None: $TUNER_DATA_DIR or ./data) holds mnist/cifar10/imagenet files; digits
    needs none. `cache_dir` None: $TUNER_CACHE_DIR or ~/.cache/tuner/features.
    """
    _check_applicable(cfg)
    if cfg.constraints is not None:  # before any image is read: a bad file fails at once
        judgments = read_judgments(cfg.constraints, cfg.constraint)
    source = open_source(cfg, data_dir)
    weights = (
        resolve_weights(cfg.resnet_weights, cfg.download)
        if cfg.feature_extractor == "resnet"
        else None
    )
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    arrays, _hit = load_or_build(
        cache,
        feature_key(cfg, source, weights),
        lambda: featurize(cfg, source.load(progress), weights, progress),
        entry_problem,
        ENTRY_NAMES,
    )
    data = assemble(cfg, arrays)
    if cfg.constraints is None:
        return data
    where, position = item_places(cfg, arrays)
    names = source.item_names() if source.item_names is not None else None
    # Enough of them for a batch is checked by the caller, which knows every batch size a trial can
    # get.
    placed = place_judgments(
        judgments, where, position, len(data.y_train), names, cfg.val_size, cfg.split_seed
    )
    return dataclasses.replace(data, judgments=placed)


def item_places(cfg: TrialConfig, arrays: Arrays) -> tuple[np.ndarray, np.ndarray]:
    """For each item of the training order: its split (0 train, 1 validation, 2 test) and its row
    there. `three_splits` applied to row numbers: the split depends on the labels and seeds only."""
    n = len(arrays["y_train"])
    rows: Arrays = {"x_train": np.arange(n)[:, None], "y_train": arrays["y_train"]}
    if "x_test" in arrays:  # an official test split holds no item of the training order
        rows.update(x_test=np.arange(len(arrays["y_test"]))[:, None], y_test=arrays["y_test"])
    parts = three_splits(cfg, rows)
    where, position = np.full(n, 2, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for code, part in enumerate(
        ("train", "val") if "x_test" in arrays else ("train", "val", "test")
    ):
        ids = parts[part][0][:, 0]
        where[ids], position[ids] = code, np.arange(len(ids))
    return where, position


def _check_applicable(cfg: TrialConfig) -> None:
    # Silently ignoring these would leave a user believing they took effect.
    if cfg.dataset != "imagenet":
        for name in ("classes", "image_size"):
            if getattr(cfg, name) is not None:
                raise TunerError(
                    f"{name} = {getattr(cfg, name)!r} applies to dataset imagenet only, "
                    f"not {cfg.dataset}: set it to null."
                )


def open_source(cfg: TrialConfig, data_dir: str | Path | None) -> Source:
    if cfg.dataset == "digits":
        return digits_source()
    root = Path(data_dir if data_dir is not None else default_data_dir()).expanduser().resolve()
    if cfg.dataset == "mnist":
        return mnist_source(root, cfg.download)
    if cfg.dataset == "cifar10":
        return cifar10_source(root, cfg.download)
    return imagenet_source(root, cfg.classes, cfg.image_size)


def feature_key(cfg: TrialConfig, source: Source, weights: Any) -> dict[str, Any]:
    """Everything that determines the cached arrays, and nothing that does not."""
    key: dict[str, Any] = {
        "dataset": cfg.dataset,
        "feature_extractor": cfg.feature_extractor,
        "source": source.fingerprint,
    }
    if cfg.feature_extractor == "hog":
        key["hog"] = [cfg.hog_orientations, cfg.hog_pixels_per_cell, cfg.hog_cells_per_block]
    if cfg.feature_extractor == "resnet":
        key["resnet_weights"] = weights_name(weights)
    key["libraries"] = library_versions(cfg)
    return key


def library_versions(cfg: TrialConfig) -> dict[str, str]:
    """Versions of the libraries that compute the cached arrays: an upgrade may change them."""
    names = ["numpy"]  # raw features, and the arrays every extractor works on
    names += {"hog": ["scikit-image"], "resnet": ["torch", "torchvision"]}.get(
        cfg.feature_extractor, []
    )
    if cfg.dataset == "imagenet":
        names += ["pillow", "torchvision"]  # decode and resize the images
    versions = {}
    for name in sorted(set(names)):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


# The arrays `featurize` writes into a cache entry: nothing else in an entry is read.
ENTRY_NAMES = ("x_train", "y_train", "x_test", "y_test", "label_names", "image_shape")


def entry_problem(arrays: Arrays) -> str | None:
    """What is wrong with a cached entry's arrays (as `featurize` writes them), or None."""
    need = {
        "x_train": (2, "f"),
        "y_train": (1, "i"),
        "label_names": (1, "U"),
        "image_shape": (1, "i"),
    }
    if ("x_test" in arrays) != ("y_test" in arrays):
        return "it holds only one of x_test and y_test"
    if "x_test" in arrays:
        need.update(x_test=(2, "f"), y_test=(1, "i"))
    for name, (ndim, kind) in need.items():
        array = arrays.get(name)
        if array is None or array.ndim != ndim or array.dtype.kind != kind:
            return f"{name} is missing or not a {ndim}-d array of kind {kind!r}"
    for x, y in (("x_train", "y_train"), ("x_test", "y_test")):
        if x in arrays and (
            len(arrays[x]) != len(arrays[y]) or arrays[x].shape[1] != arrays["x_train"].shape[1]
        ):
            return f"{x} and {y} do not match ({arrays[x].shape} and {arrays[y].shape})"
    labels = np.concatenate([arrays["y_train"], arrays.get("y_test", arrays["y_train"][:0])])
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= len(arrays["label_names"]):
        return f"labels lie outside 0..{len(arrays['label_names']) - 1}, the label names"
    shape = arrays["image_shape"]
    if len(shape) and int(np.prod(shape)) != arrays["x_train"].shape[1]:
        return (
            f"image_shape {tuple(int(v) for v in shape)} does not match "
            f"{arrays['x_train'].shape[1]} features"
        )
    return None


def featurize(cfg: TrialConfig, images: ImageData, weights: Any, progress: bool) -> Arrays:
    """Extract features of all images at once (one pool, one progress bar), then part them again."""
    parts = [images.x_train] + ([images.x_test] if images.x_test is not None else [])
    everything = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if cfg.feature_extractor == "raw":
        feats = everything.reshape(len(everything), -1).astype(np.float32)
        # in place: CIFAR-10's pixels alone are 0.7 GB as float32
        feats /= np.float32(images.max_value)
    elif cfg.feature_extractor == "hog":
        feats = hog_features(
            everything,
            cfg.hog_orientations,
            cfg.hog_pixels_per_cell,
            cfg.hog_cells_per_block,
            max_value=images.max_value,
            progress=progress,
        )
    else:
        feats = resnet_features(everything, weights, max_value=images.max_value, progress=progress)
    n_train = len(images.x_train)
    arrays: Arrays = {
        "x_train": feats[:n_train],
        "y_train": images.y_train.astype(np.int64),
        "label_names": np.asarray(images.label_names, dtype=str),
        "image_shape": np.asarray(
            images.x_train.shape[1:] if cfg.feature_extractor == "raw" else (), dtype=np.int64
        ),
    }
    if images.x_test is not None:
        arrays["x_test"], arrays["y_test"] = feats[n_train:], images.y_test.astype(np.int64)
    return arrays


def assemble(cfg: TrialConfig, arrays: Arrays) -> FeatureSet:
    """Split (train / validation / test), merge labels, name them and standardize: cheap, so per
    call."""
    names = tuple(str(n) for n in arrays["label_names"])
    fine_names = names
    # the mapping is checked on the label numbers, before any split
    if cfg.composite_labels is not None:
        _, names = compose_labels(np.arange(len(fine_names)), cfg.composite_labels, fine_names)
    names = resolve_label_names(names, cfg.label_names)
    splits = three_splits(cfg, arrays)
    fine: dict[str, np.ndarray | None] = {part: None for part in splits}
    if cfg.composite_labels is not None:
        fine = {part: y for part, (_, y) in splits.items()}
        splits = {
            part: (x, compose_labels(y, cfg.composite_labels, fine_names)[0])
            for part, (x, y) in splits.items()
        }
    xs = [x for x, _ in splits.values()]
    if cfg.normalize:  # statistics of the training split only
        xs = list(standardize(*xs))
    (x_tr, x_va, x_te), (y_tr, y_va, y_te) = xs, [y for _, y in splits.values()]
    shape = tuple(int(v) for v in arrays["image_shape"]) or None
    return FeatureSet(
        x_train=np.ascontiguousarray(x_tr, dtype=np.float32),
        y_train=y_tr.astype(np.int64),
        x_val=np.ascontiguousarray(x_va, dtype=np.float32),
        y_val=y_va.astype(np.int64),
        x_test=np.ascontiguousarray(x_te, dtype=np.float32),
        y_test=y_te.astype(np.int64),
        label_names=names,
        fine_y_train=fine["train"],
        fine_y_val=fine["val"],
        fine_y_test=fine["test"],
        image_shape=shape,
    )


def three_splits(cfg: TrialConfig, arrays: Arrays) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "val", "test"} -> (x, y). The test split is the official one where the data has
    one, else a stratified `test_size` share; validation then comes out of the training part."""
    x_tr, y_tr = arrays["x_train"], arrays["y_train"]
    official = "x_test" in arrays
    if official:
        x_te, y_te = arrays["x_test"], arrays["y_test"]
    else:
        x_tr, y_tr, x_te, y_te = stratified_split(x_tr, y_tr, cfg.test_size, cfg.split_seed)
    n_val = validation_count(cfg.val_size, len(y_tr), len(y_te), official)
    x_tr, y_tr, x_va, y_va = validation_split(x_tr, y_tr, n_val, cfg.split_seed, cfg.val_size)
    return {"train": (x_tr, y_tr), "val": (x_va, y_va), "test": (x_te, y_te)}
