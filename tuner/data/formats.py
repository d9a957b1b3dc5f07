"""Readers of the MNIST IDX and CIFAR-10 python files that treat each file as possibly hostile.

Every problem (a truncated or garbage file, a pickle that asks for code) is a TunerError naming
the file and what is wrong, never a numpy or pickle traceback; and no file can run code.
"""

from __future__ import annotations

import codecs
import contextlib
import math
import os
import pickle
import stat
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

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
        raise TunerError(f"mnist: {path} changed while it was read. Read it again once nothing writes to it.")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _idx_shape(path: Path, header: bytes, size: int, ndim: int) -> tuple[int, ...]:
    """The shape the header declares, once the header and the file's size agree with it."""
    head = 4 + 4 * ndim
    if len(header) < head or header[:2] != b"\0\0" or header[2] != IDX_UBYTE or header[3] != ndim:
        raise TunerError(f"mnist: {path} is not an IDX file of {ndim}-dimensional unsigned bytes "
                         f"(header 00 00 08 {ndim:02x}): it starts with {header[:4].hex(' ') or 'nothing'} "
                         f"and is {size} bytes. Replace it with the official (uncompressed) file.")
    shape = tuple(int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if shape[0] == 0:
        raise TunerError(f"mnist: {path} holds no {'labels' if ndim == 1 else 'images'}: its header declares "
                         f"shape {shape}. Replace it with the official file.")
    if min(shape) == 0:
        raise TunerError(f"mnist: {path}: its header declares images of shape {shape[1:]}; every dimension "
                         f"must be at least 1. Replace it with the official file.")
    expected = head + math.prod(shape)
    if size != expected:
        problem = "truncated" if size < expected else "longer than its header says"
        raise TunerError(f"mnist: {path} is {problem}: its header declares shape {shape}, i.e. "
                         f"{expected} bytes, but the file has {size}. Replace it with the official file.")
    return shape


def check_mnist_pair(images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path) -> None:
    if len(images) != len(labels):
        raise TunerError(f"mnist: {image_path} holds {len(images)} images but {label_path} holds "
                         f"{len(labels)} labels: the files belong to different sets.")
    if len(labels) and labels.max() >= N_CLASSES:
        raise TunerError(f"mnist: {label_path} holds the label {int(labels.max())}; MNIST labels are 0..9.")


def check_same_image_shape(train: np.ndarray, test: np.ndarray, train_path: Path, test_path: Path) -> None:
    """Train and test images must have one size: the features of both feed one model."""
    if train.shape[1:] != test.shape[1:]:
        show = lambda a: "x".join(map(str, a.shape[1:]))  # noqa: E731
        raise TunerError(f"mnist: {train_path} holds images of {show(train)} pixels but {test_path} holds "
                         f"images of {show(test)}: both splits need one image size. Replace them with the "
                         f"official files.")


@contextlib.contextmanager
def open_regular(path: Path, dataset: str) -> Iterator[BinaryIO]:
    """`path` opened for reading, refused unless it is a regular file.

    O_NONBLOCK keeps the open itself from waiting for a writer when the path is a FIFO; the
    check then runs on what was opened, so nothing can be swapped in between.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise TunerError(f"{dataset}: could not read {path}: {err.strerror or err}.") from None
    with os.fdopen(fd, "rb") as f:
        check_regular(path, os.fstat(fd).st_mode, dataset)
        os.set_blocking(fd, True)
        try:
            yield f
        except OSError as err:
            raise TunerError(f"{dataset}: could not read {path}: {err.strerror or err}.") from None


def check_regular(path: Path, mode: int, dataset: str) -> None:
    if not stat.S_ISREG(mode):
        raise TunerError(f"{dataset}: {path} is not a regular file (it is a {_file_kind(mode)}). Data files "
                         f"must be plain files: remove it or replace it with one.")


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "special file")


# ----------------------------------------------------------------------------- CIFAR-10 pickles

def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1"); any other
    # codec is not something a CIFAR batch needs.
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# What the official batches (Python 2, numpy 1) and batches written by Python 3 with numpy
# 1 or 2 reference, looked up through numpy itself: numpy 2 moved numpy.core to numpy._core.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 arrays: frombuffer, then reshape


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a function or class outside ALLOWED_GLOBALS."""


class RefusedArray(pickle.UnpicklingError):
    """The pickle builds an array some other way than numpy's own pickling does."""


def _ndarray_called(*_args: Any) -> None:
    # `numpy.ndarray` is in a real batch only as the type handed to _reconstruct. Called itself,
    # it takes a buffer, offset and strides: b"\0" with strides (0, 0) claims 10**9 rows.
    raise RefusedArray("numpy.ndarray is called with a buffer and strides of its own")


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    # numpy pickles an array as an empty _reconstruct(ndarray, (0,), b"b") whose __setstate__
    # then brings shape, dtype and the bytes; __setstate__ refuses bytes of the wrong length.
    if subtype is not _ndarray_called or shape != (0,):
        raise RefusedArray(f"numpy's _reconstruct is asked for shape {repr(shape)[:60]} of "
                           f"{type(subtype).__name__}, not the empty ndarray numpy's own pickles start from")
    return _RECONSTRUCT(np.ndarray, (0,), typecode)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): _ndarray_called,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain values and numpy arrays; refuses every other global, so nothing runs."""

    def __init__(self, file: BinaryIO) -> None:
        # encoding="bytes": the official batches are Python 2 pickles whose str keys were bytes.
        super().__init__(file, encoding="bytes")

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


def load_pickle_dict(path: Path) -> dict[str, Any]:
    """A CIFAR-10 python file as a dict with str keys, read by ArraysOnlyUnpickler."""
    try:
        with open_regular(path, "cifar10") as f:
            size = os.fstat(f.fileno()).st_size
            entry = ArraysOnlyUnpickler(f).load()
    except RefusedGlobal as err:
        raise TunerError(f"cifar10: refused to read {path}: it asks to load {err}, and a CIFAR-10 batch "
                         f"holds only numpy arrays, lists, numbers and strings (loading anything else could "
                         f"run code). Replace it with the official file.") from None
    except RefusedArray as err:
        raise _refused_array(path, str(err)) from None
    except TunerError:
        raise
    except Exception as err:  # noqa: BLE001 - garbage makes pickle raise nearly any type
        raise TunerError(f"cifar10: {path} is not a readable CIFAR-10 python batch (truncated or garbage: "
                         f"{type(err).__name__}: {err}). Replace it with the official file.") from None
    if not isinstance(entry, dict):
        raise TunerError(f"cifar10: {path} holds a {type(entry).__name__}, not the dict of a CIFAR-10 batch.")
    odd = next((k for k in entry if not isinstance(k, (bytes, str))), None)
    if odd is not None:
        raise TunerError(f"cifar10: {path} holds a dict with a key of type {type(odd).__name__}, not a CIFAR-10 "
                         f"batch (its keys are names such as 'data' and 'labels'). Replace it with the official file.")
    for value in entry.values():
        _check_array(path, value, size)
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _check_array(path: Path, value: Any, file_size: int) -> None:
    """An array must lie in memory as its shape says and hold no more bytes than the file: a
    second guard, beside the unpickler's, against arrays that claim memory they do not have."""
    if not isinstance(value, np.ndarray):
        return
    if not (value.flags.c_contiguous or value.flags.f_contiguous) or value.nbytes > file_size:
        raise _refused_array(path, f"it holds a {value.dtype} array of shape {value.shape} and strides "
                                   f"{value.strides} ({value.nbytes} bytes) in a file of {file_size} bytes")


def _refused_array(path: Path, why: str) -> TunerError:
    return TunerError(f"cifar10: refused to read {path}: {why}. A CIFAR-10 batch holds arrays as numpy "
                      f"pickles them, every byte in the file; an array built any other way can claim more "
                      f"memory than the file holds. Replace it with the official file.")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (N, 3, 32, 32) uint8, labels (N,) int64) of one batch file."""
    batch = load_pickle_dict(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != CIFAR_ROW or data.dtype.kind not in "ui":
        shown = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise TunerError(f"cifar10: {path}: 'data' must be an integer array of shape (N, {CIFAR_ROW}) "
                         f"(N images of 32x32 RGB), got {shown}.")
    if len(data) == 0:
        raise TunerError(f"cifar10: {path} holds no images: 'data' has shape {data.shape}. "
                         f"Replace it with the official file.")
    if data.min() < 0 or data.max() > 255:
        raise TunerError(f"cifar10: {path}: pixel values must lie in 0..255, found {data.min()}..{data.max()}.")
    label_array = _as_array(labels)
    if (label_array.ndim != 1 or len(label_array) != len(data) or label_array.dtype.kind not in "ui"
            or (len(label_array) and not 0 <= label_array.min() <= label_array.max() < N_CLASSES)):
        raise TunerError(f"cifar10: {path}: 'labels' must be a list of {len(data)} integers in 0..9 "
                         f"(one per image), got {_describe(labels)}.")
    # Each row is 1024 red, then green, then blue values of a 32x32 image: already CHW.
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), label_array.astype(np.int64)


def read_cifar_names(path: Path) -> tuple[str, ...]:
    names = load_pickle_dict(path).get("label_names")
    if not isinstance(names, list) or len(names) != N_CLASSES or not all(isinstance(n, (bytes, str)) for n in names):
        raise TunerError(f"cifar10: {path}: 'label_names' must be a list of {N_CLASSES} names, "
                         f"got {_describe(names)}.")
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
        return f"a list of {len(value)} ({', '.join(sorted({type(v).__name__ for v in value})) or 'empty'})"
    return "nothing" if value is None else f"a {type(value).__name__}"
