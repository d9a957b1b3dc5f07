"""Where images come from: digits (scikit-learn), MNIST and CIFAR-10 files in their official layouts.

`open_source` is cheap: it checks (or downloads) the files and fingerprints them, so the
feature cache can be consulted before any image is decoded. `Source.load` reads the images.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tuner.errors import TunerError

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


@dataclass(frozen=True)
class ImageData:
    """Images as (N, C, H, W) arrays with integer labels 0..n-1.

    `x_test` is None when the dataset has no official split (the caller splits).
    `max_value` is the pixel value that means "white" (255 for uint8, 16 for digits).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    label_names: tuple[str, ...]
    max_value: float


@dataclass(frozen=True)
class Source:
    """A dataset located and checked, not yet read."""

    dataset: str
    fingerprint: dict[str, Any]  # everything about the files that determines the images
    load: Callable[[bool], ImageData]  # progress -> images


def default_data_dir() -> Path:
    return Path(os.environ.get("TUNER_DATA_DIR") or "data")


def file_stats(paths: list[Path]) -> list[list[Any]]:
    # Size and mtime catch files replaced in place under the same directory.
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


# ----------------------------------------------------------------------------- digits

def digits_source() -> Source:
    return Source("digits", {"dataset": "digits"}, lambda _progress: load_digits_images())


def load_digits_images() -> ImageData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None, :, :]
    names = tuple(str(n) for n in bunch.target_names)
    return ImageData(images, bunch.target.astype(np.int64), None, None, names, 16.0)


# ----------------------------------------------------------------------------- mnist

def mnist_source(root: Path, download: bool) -> Source:
    raw = root / "MNIST" / "raw"
    paths = [raw / name for name in MNIST_FILES]
    if not all(p.is_file() for p in paths):
        if not download:
            raise _missing("mnist", root, raw, paths)
        _download(lambda: _torchvision_mnist(root, True, download=True), "mnist", root)
    return Source("mnist", {"dataset": "mnist", "root": str(root), "files": file_stats(paths)},
                  lambda _progress: load_mnist_images(root))


def _torchvision_mnist(root: Path, train: bool, download: bool = False) -> Any:
    from torchvision.datasets import MNIST

    return MNIST(str(root), train=train, download=download)


def load_mnist_images(root: Path) -> ImageData:
    arrays = []
    for train in (True, False):
        try:
            ds = _torchvision_mnist(root, train)
        except (OSError, RuntimeError, TypeError, ValueError) as err:
            raise TunerError(f"mnist: could not read the IDX files in {root / 'MNIST' / 'raw'}: {err}") from None
        arrays += [ds.data.numpy()[:, None, :, :], ds.targets.numpy().astype(np.int64)]
    names = tuple(str(i) for i in range(10))
    return ImageData(*arrays, label_names=names, max_value=255.0)


# ----------------------------------------------------------------------------- cifar10

def cifar10_source(root: Path, download: bool) -> Source:
    folder = root / CIFAR_DIR
    paths = [folder / name for name in CIFAR_FILES]
    if not all(p.is_file() for p in paths):
        if not download:
            raise _missing("cifar10", root, folder, paths)
        _download(lambda: _torchvision_cifar_download(root), "cifar10", root)
    return Source("cifar10", {"dataset": "cifar10", "root": str(root), "files": file_stats(paths)},
                  lambda _progress: load_cifar10_images(root))


def _torchvision_cifar_download(root: Path) -> None:
    # torchvision downloads the official archive and checks every md5: the right tool for
    # fetching, but not for reading, since it rejects any batch it did not publish.
    from torchvision.datasets import CIFAR10

    CIFAR10(str(root), train=True, download=True)


def load_cifar10_images(root: Path) -> ImageData:
    """Read the official python batches, as torchvision does, minus its md5 check."""
    folder = root / CIFAR_DIR
    parts = [_read_pickle(folder / name) for name in CIFAR_FILES[:5]]
    test = _read_pickle(folder / "test_batch")
    meta = _read_pickle(folder / "batches.meta")
    try:
        x_train = np.concatenate([_cifar_pixels(p) for p in parts])
        y_train = np.concatenate([np.asarray(p["labels"], dtype=np.int64) for p in parts])
        x_test, y_test = _cifar_pixels(test), np.asarray(test["labels"], dtype=np.int64)
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta["label_names"])
    except (KeyError, ValueError) as err:
        raise TunerError(f"cifar10: the batches in {folder} are not in the CIFAR-10 python format "
                         f"(dicts with data, labels; batches.meta with label_names): {err}") from None
    return ImageData(x_train, y_train, x_test, y_test, names, 255.0)


def _read_pickle(path: Path) -> dict[str, Any]:
    # The official batches are Python 2 pickles: with encoding="bytes" their keys come back
    # as bytes, exactly like batches written by Python 3 with bytes keys; decode both alike.
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError) as err:
        raise TunerError(f"cifar10: could not read {path}: {err}") from None
    if not isinstance(entry, dict):
        raise TunerError(f"cifar10: {path} does not hold a dict, as the CIFAR-10 python batches do.")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _cifar_pixels(batch: dict[str, Any]) -> np.ndarray:
    # Each row is 1024 red, then green, then blue values of a 32x32 image: already CHW.
    return np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)


# ----------------------------------------------------------------------------- errors

def _missing(dataset: str, root: Path, folder: Path, paths: list[Path]) -> TunerError:
    missing = [p.name for p in paths if not p.is_file()]
    return TunerError(
        f"{dataset}: data_dir {root} lacks files: expected {', '.join(p.name for p in paths)} in {folder}; "
        f"missing: {', '.join(missing)}. Set download: true to fetch them with torchvision, or copy the "
        f"official files there (or point --data-dir / $TUNER_DATA_DIR at a directory that has them).")


def _download(fetch: Callable[[], Any], dataset: str, root: Path) -> None:
    try:
        fetch()
    except (OSError, RuntimeError, ValueError) as err:
        raise TunerError(f"{dataset}: download into data_dir {root} failed ({err}). Copy the official "
                         f"files there instead, or retry where the internet is reachable.") from None
