"""Where images come from: digits (scikit-learn), MNIST and CIFAR-10 files in their official
layouts.

`open_source` is cheap: it checks (or downloads) the files and fingerprints them, so the
feature cache can be consulted before any image is decoded. `Source.load` reads the images.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuner.core.datasets import DATASETS
from tuner.data.files import check_regular, open_regular
from tuner.data.formats import (
    check_mnist_pair,
    check_same_image_shape,
    read_cifar_batch,
    read_cifar_names,
    read_idx,
)
from tuner.errors import TunerError

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
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
    # An image folder's training images by path relative to the class root, in training order
    # (how a constraints file names them); None: items are named by their index.
    item_names: Callable[[], tuple[str, ...]] | None = None


def default_data_dir() -> Path:
    return Path(os.environ.get("TUNER_DATA_DIR") or "data")


HASHED_ENDS = 64 * 1024  # bytes hashed at each end of a data file


def file_entries(paths: list[Path], root: Path, dataset: str) -> list[list[Any]]:
    """[path relative to root, size, mtime_ns, content digest] of each file: its cache identity."""
    entries = []
    for path in paths:
        try:
            st = path.stat()
        except OSError as err:
            raise TunerError(f"{dataset}: could not read {path}: {err.strerror or err}.") from None
        # A FIFO named like a data file would make the digest wait forever for a writer.
        check_regular(path, st.st_mode, dataset)
        entries.append(
            [
                path.relative_to(root).as_posix(),
                st.st_size,
                st.st_mtime_ns,
                content_digest(path, st.st_size, dataset),
            ]
        )
    return entries


def content_digest(path: Path, size: int, dataset: str) -> str:
    """sha256 of the size and the first and last 64 KiB of the file.

    Size and mtime alone miss a file replaced by `cp -p` or `rsync -t` (both keep the mtime).
    Hashing whole files would read every byte of the dataset, gigabytes for an image tree, on
    each cache lookup; the two ends hold every IDX and pickle header, the start and end of
    the pixel data, and the whole of any file up to 128 KiB (most images). What this misses
    is an edit inside a large file that keeps its size and restores its mtime.
    """
    digest = hashlib.sha256(str(size).encode())
    with open_regular(path, dataset) as f:
        digest.update(f.read(HASHED_ENDS))
        if size > HASHED_ENDS:
            f.seek(max(HASHED_ENDS, size - HASHED_ENDS))
            digest.update(f.read(HASHED_ENDS))
    return digest.hexdigest()


# ----------------------------------------------------------------------------- digits


def digits_source() -> Source:
    return Source("digits", {"dataset": "digits"}, lambda _progress: load_digits_images())


def load_digits_images() -> ImageData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None, :, :]
    names = tuple(str(n) for n in bunch.target_names)
    return ImageData(
        images, bunch.target.astype(np.int64), None, None, names, DATASETS["digits"].max_value
    )


# ----------------------------------------------------------------------------- mnist


def _file_source(
    dataset: str,
    root: Path,
    folder: Path,
    names: tuple[str, ...],
    download: bool,
    fetch: Callable[[Path], None],
    read: Callable[[Path], ImageData],
) -> Source:
    """A dataset of fixed files in `folder`: fetched when missing and allowed, fingerprinted, read
    lazily."""
    paths = [folder / name for name in names]
    if not all(p.is_file() for p in paths):
        if not download:
            raise _missing(dataset, root, folder, paths)
        _download(lambda: fetch(root), dataset, root)
    return Source(
        dataset,
        {"dataset": dataset, "root": str(root), "files": file_entries(paths, root, dataset)},
        lambda _progress: read(root),
    )


def mnist_source(root: Path, download: bool) -> Source:
    return _file_source(
        "mnist",
        root,
        root / "MNIST" / "raw",
        MNIST_FILES,
        download,
        _torchvision_mnist_download,
        load_mnist_images,
    )


def _torchvision_mnist_download(root: Path) -> None:
    from torchvision.datasets import MNIST

    MNIST(str(root), train=True, download=True)


def load_mnist_images(root: Path) -> ImageData:
    # Read with our own IDX reader, not torchvision's: a truncated or garbage file then names
    # itself and what is wrong, instead of ending in an assertion or a reshape error.
    raw = root / "MNIST" / "raw"
    arrays, image_paths = [], []
    for prefix in ("train", "t10k"):
        image_path, label_path = (
            raw / f"{prefix}-images-idx3-ubyte",
            raw / f"{prefix}-labels-idx1-ubyte",
        )
        images, labels = read_idx(image_path, 3), read_idx(label_path, 1)
        check_mnist_pair(images, labels, image_path, label_path)
        arrays += [images[:, None, :, :], labels.astype(np.int64)]
        image_paths.append(image_path)
    check_same_image_shape(arrays[0][:, 0], arrays[2][:, 0], *image_paths)
    names = tuple(str(i) for i in range(10))
    return ImageData(*arrays, label_names=names, max_value=DATASETS["mnist"].max_value)


# ----------------------------------------------------------------------------- cifar10


def cifar10_source(root: Path, download: bool) -> Source:
    return _file_source(
        "cifar10",
        root,
        root / CIFAR_DIR,
        CIFAR_FILES,
        download,
        _torchvision_cifar_download,
        load_cifar10_images,
    )


def _torchvision_cifar_download(root: Path) -> None:
    # torchvision downloads the official archive and checks every md5: the right tool for
    # fetching, but not for reading, since it rejects any batch it did not publish.
    from torchvision.datasets import CIFAR10

    CIFAR10(str(root), train=True, download=True)


def load_cifar10_images(root: Path) -> ImageData:
    """Read the official python batches, as torchvision does, minus its md5 check.

    Without that check any file could be there: formats.py unpickles them without running code.
    """
    folder = root / CIFAR_DIR
    parts = [read_cifar_batch(folder / name) for name in CIFAR_FILES[:5]]
    x_test, y_test = read_cifar_batch(folder / "test_batch")
    names = read_cifar_names(folder / "batches.meta")
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    return ImageData(x_train, y_train, x_test, y_test, names, DATASETS["cifar10"].max_value)


# ----------------------------------------------------------------------------- errors


def _missing(dataset: str, root: Path, folder: Path, paths: list[Path]) -> TunerError:
    missing = [p.name for p in paths if not p.is_file()]
    return TunerError(
        f"{dataset}: data_dir {root} lacks files: expected {', '.join(p.name for p in paths)} in "
        f"{folder}; missing: {', '.join(missing)}. Set download: true to fetch them with "
        "torchvision, or copy the official files there (or point --data-dir / $TUNER_DATA_DIR at a "
        "directory that has them)."
    )


def _download(fetch: Callable[[], Any], dataset: str, root: Path) -> None:
    try:
        fetch()
    except (OSError, RuntimeError, ValueError) as err:
        raise TunerError(
            f"{dataset}: download into data_dir {root} failed ({err}). Copy the official "
            f"files there instead, or retry where the internet is reachable."
        ) from None
