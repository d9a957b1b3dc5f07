"""Readers of the MNIST IDX and CIFAR-10 python files that treat each file as possibly hostile.

Every problem (a truncated or garbage file, a pickle that asks for code) is a TunerError naming
the file and what is wrong, never a numpy or pickle traceback; and no file can run code.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from tuner.data.files import open_regular
from tuner.data.safe_pickle import load_pickle_dict
from tuner.errors import TunerError

IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes: what every MNIST file holds
CIFAR_ROW = 3 * 32 * 32
N_CLASSES = 10


# ----------------------------------------------------------------------------- MNIST IDX


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions, checked against its own header.

    Header: two zero bytes, the type code, the number of dimensions, then one big-endian
    uint32 per dimension. The header is checked, and the size it promises compared with the
    file's size, before the rest is read: a garbage header or a huge (sparse) file then costs
    nothing but the error.
    """
    head = 4 + 4 * ndim
    with open_regular(path, "mnist") as f:
        size = os.fstat(f.fileno()).st_size
        header = f.read(head)
        shape = _idx_shape(path, header, size, ndim)
        data = f.read()
    if len(data) != size - head:  # the file changed while it was read
        raise TunerError(
            f"mnist: {path} changed while it was read. Read it again once nothing writes to it."
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _idx_shape(path: Path, header: bytes, size: int, ndim: int) -> tuple[int, ...]:
    """The shape the header declares, once the header and the file's size agree with it."""
    head = 4 + 4 * ndim
    if len(header) < head or header[:2] != b"\0\0" or header[2] != IDX_UBYTE or header[3] != ndim:
        raise TunerError(
            f"mnist: {path} is not an IDX file of {ndim}-dimensional unsigned bytes "
            f"(header 00 00 08 {ndim:02x}): it starts with {header[:4].hex(' ') or 'nothing'} "
            f"and is {size} bytes. Replace it with the official (uncompressed) file."
        )
    shape = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if shape[0] == 0:
        raise TunerError(
            f"mnist: {path} holds no {'labels' if ndim == 1 else 'images'}: its header declares "
            f"shape {shape}. Replace it with the official file."
        )
    if min(shape) == 0:
        raise TunerError(
            f"mnist: {path}: its header declares images of shape {shape[1:]}; every dimension "
            f"must be at least 1. Replace it with the official file."
        )
    expected = head + math.prod(shape)
    if size != expected:
        problem = "truncated" if size < expected else "longer than its header says"
        raise TunerError(
            f"mnist: {path} is {problem}: its header declares shape {shape}, i.e. "
            f"{expected} bytes, but the file has {size}. Replace it with the official file."
        )
    return shape


def check_mnist_pair(
    images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path
) -> None:
    if len(images) != len(labels):
        raise TunerError(
            f"mnist: {image_path} holds {len(images)} images but {label_path} holds "
            f"{len(labels)} labels: the files belong to different sets."
        )
    if len(labels) and labels.max() >= N_CLASSES:
        raise TunerError(
            f"mnist: {label_path} holds the label {int(labels.max())}; MNIST labels are 0..9."
        )


def check_same_image_shape(
    train: np.ndarray, test: np.ndarray, train_path: Path, test_path: Path
) -> None:
    """Train and test images must have one size: the features of both feed one model."""
    if train.shape[1:] != test.shape[1:]:
        show = lambda a: "x".join(map(str, a.shape[1:]))  # noqa: E731
        raise TunerError(
            f"mnist: {train_path} holds images of {show(train)} pixels but {test_path} holds "
            f"images of {show(test)}: both splits need one image size. Replace them with the "
            f"official files."
        )


# ----------------------------------------------------------------------------- CIFAR-10 batches


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (N, 3, 32, 32) uint8, labels (N,) int64) of one batch file."""
    batch = load_pickle_dict(path)
    data, labels = batch.get("data"), batch.get("labels")
    if (
        not isinstance(data, np.ndarray)
        or data.ndim != 2
        or data.shape[1] != CIFAR_ROW
        or data.dtype.kind not in "ui"
    ):
        shown = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise TunerError(
            f"cifar10: {path}: 'data' must be an integer array of shape (N, {CIFAR_ROW}) "
            f"(N images of 32x32 RGB), got {shown}."
        )
    if len(data) == 0:
        raise TunerError(
            f"cifar10: {path} holds no images: 'data' has shape {data.shape}. "
            f"Replace it with the official file."
        )
    if data.min() < 0 or data.max() > 255:
        raise TunerError(
            f"cifar10: {path}: pixel values must lie in 0..255, found {data.min()}..{data.max()}."
        )
    label_array = _as_array(labels)
    if (
        label_array.ndim != 1
        or len(label_array) != len(data)
        or label_array.dtype.kind not in "ui"
        or (len(label_array) and not 0 <= label_array.min() <= label_array.max() < N_CLASSES)
    ):
        raise TunerError(
            f"cifar10: {path}: 'labels' must be a list of {len(data)} integers in 0..9 "
            f"(one per image), got {_describe(labels)}."
        )
    # Each row is 1024 red, then green, then blue values of a 32x32 image: already CHW.
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), label_array.astype(np.int64)


def read_cifar_names(path: Path) -> tuple[str, ...]:
    names = load_pickle_dict(path).get("label_names")
    if (
        not isinstance(names, list)
        or len(names) != N_CLASSES
        or not all(isinstance(n, (bytes, str)) for n in names)
    ):
        raise TunerError(
            f"cifar10: {path}: 'label_names' must be a list of {N_CLASSES} names, "
            f"got {_describe(names)}."
        )
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def _as_array(value: Any) -> np.ndarray:
    # Labels as an array; anything else (a list of other things than ints, which could be one
    # big array repeated a million times) as one that fails the checks.
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        try:
            return np.asarray(value, dtype=np.int64)
        except OverflowError:
            pass
    return np.asarray([None])


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, list):
        return (
            f"a list of {len(value)} "
            f"({', '.join(sorted({type(v).__name__ for v in value})) or 'empty'})"
        )
    return "nothing" if value is None else f"a {type(value).__name__}"
