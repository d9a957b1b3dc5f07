"""Readers of the MNIST IDX and CIFAR-10 python files that treat each file as possibly hostile.

Every problem (a truncated or garbage file, a pickle that asks for code) is a TunerError naming
the file and what is wrong, never a numpy or pickle traceback; and no file can run code.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from tuner.errors import TunerError

IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes: what every MNIST file holds
CIFAR_ROW = 3 * 32 * 32
N_CLASSES = 10


# ----------------------------------------------------------------------------- MNIST IDX

def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with `ndim` dimensions, checked against its own header.

    Header: two zero bytes, the type code, the number of dimensions, then one big-endian
    uint32 per dimension. The size the header promises must be the file's size, which also
    keeps a garbage header from asking for more memory than the file holds.
    """
    data = _read_bytes(path)
    head = 4 + 4 * ndim
    if len(data) < head or data[:2] != b"\0\0" or data[2] != IDX_UBYTE or data[3] != ndim:
        raise TunerError(f"mnist: {path} is not an IDX file of {ndim}-dimensional unsigned bytes "
                         f"(header 00 00 08 {ndim:02x}): it starts with {data[:4].hex(' ') or 'nothing'} "
                         f"and is {len(data)} bytes. Replace it with the official (uncompressed) file.")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = head + int(np.prod(shape, dtype=object))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise TunerError(f"mnist: {path} is {problem}: its header declares shape {shape}, i.e. "
                         f"{expected} bytes, but the file has {len(data)}. Replace it with the official file.")
    return np.frombuffer(data, dtype=np.uint8, offset=head).reshape(shape)


def check_mnist_pair(images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path) -> None:
    if len(images) != len(labels):
        raise TunerError(f"mnist: {image_path} holds {len(images)} images but {label_path} holds "
                         f"{len(labels)} labels: the files belong to different sets.")
    if len(labels) and labels.max() >= N_CLASSES:
        raise TunerError(f"mnist: {label_path} holds the label {int(labels.max())}; MNIST labels are 0..9.")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise TunerError(f"could not read {path}: {err.strerror or err}.") from None


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
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 arrays
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a function or class outside ALLOWED_GLOBALS."""


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
        with open(path, "rb") as f:
            entry = ArraysOnlyUnpickler(f).load()
    except RefusedGlobal as err:
        raise TunerError(f"cifar10: refused to read {path}: it asks to load {err}, and a CIFAR-10 batch "
                         f"holds only numpy arrays, lists, numbers and strings (loading anything else could "
                         f"run code). Replace it with the official file.") from None
    except OSError as err:
        raise TunerError(f"cifar10: could not read {path}: {err.strerror or err}.") from None
    except Exception as err:  # noqa: BLE001 - garbage makes pickle raise nearly any type
        raise TunerError(f"cifar10: {path} is not a readable CIFAR-10 python batch (truncated or garbage: "
                         f"{type(err).__name__}: {err}). Replace it with the official file.") from None
    if not isinstance(entry, dict):
        raise TunerError(f"cifar10: {path} holds a {type(entry).__name__}, not the dict of a CIFAR-10 batch.")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in entry.items()}


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (N, 3, 32, 32) uint8, labels (N,) int64) of one batch file."""
    batch = load_pickle_dict(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != CIFAR_ROW or data.dtype.kind not in "ui":
        shown = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise TunerError(f"cifar10: {path}: 'data' must be an integer array of shape (N, {CIFAR_ROW}) "
                         f"(N images of 32x32 RGB), got {shown}.")
    if len(data) and (data.min() < 0 or data.max() > 255):
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
    # A list or array of labels as an array; anything else (or a ragged list) as one that fails the checks.
    try:
        return np.asarray(value if isinstance(value, (list, np.ndarray)) else [None])
    except (ValueError, TypeError):
        return np.asarray([None])


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, list):
        return f"a list of {len(value)} ({', '.join(sorted({type(v).__name__ for v in value})) or 'empty'})"
    return "nothing" if value is None else f"a {type(value).__name__}"
