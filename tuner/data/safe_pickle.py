"""CIFAR-10's python batches read as untrusted pickles: only plain values and numpy arrays built
the way numpy pickles them, so a crafted batch can neither run code nor claim memory it does not
hold (a zero-stride array of 10**9 rows from one byte). Problems are TunerErrors naming the file.
"""

from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from tuner.data.files import open_regular
from tuner.errors import TunerError


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
        raise RefusedArray(
            f"numpy's _reconstruct is asked for shape {repr(shape)[:60]} of "
            f"{type(subtype).__name__}, not the empty ndarray numpy's own pickles start from"
        )
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
        raise TunerError(
            f"cifar10: refused to read {path}: it asks to load {err}, and a CIFAR-10 batch "
            f"holds only numpy arrays, lists, numbers and strings (loading anything else could "
            f"run code). Replace it with the official file."
        ) from None
    except RefusedArray as err:
        raise _refused_array(path, str(err)) from None
    except TunerError:
        raise
    except Exception as err:  # noqa: BLE001 - garbage makes pickle raise nearly any type
        raise TunerError(
            f"cifar10: {path} is not a readable CIFAR-10 python batch (truncated or garbage: "
            f"{type(err).__name__}: {err}). Replace it with the official file."
        ) from None
    if not isinstance(entry, dict):
        raise TunerError(
            f"cifar10: {path} holds a {type(entry).__name__}, not the dict of a CIFAR-10 batch."
        )
    odd = next((k for k in entry if not isinstance(k, (bytes, str))), None)
    if odd is not None:
        raise TunerError(
            f"cifar10: {path} holds a dict with a key of type {type(odd).__name__}, not a CIFAR-10 "
            "batch (its keys are names such as 'data' and 'labels'). Replace it with the "
            "official file."
        )
    for value in entry.values():
        _check_array(path, value, size)
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _check_array(path: Path, value: Any, file_size: int) -> None:
    """An array must lie in memory as its shape says and hold no more bytes than the file: a
    second guard, beside the unpickler's, against arrays that claim memory they do not have."""
    if not isinstance(value, np.ndarray):
        return
    if not (value.flags.c_contiguous or value.flags.f_contiguous) or value.nbytes > file_size:
        raise _refused_array(
            path,
            f"it holds a {value.dtype} array of shape {value.shape} and strides "
            f"{value.strides} ({value.nbytes} bytes) in a file of {file_size} bytes",
        )


def _refused_array(path: Path, why: str) -> TunerError:
    return TunerError(
        f"cifar10: refused to read {path}: {why}. A CIFAR-10 batch holds arrays as numpy "
        f"pickles them, every byte in the file; an array built any other way can claim more "
        f"memory than the file holds. Replace it with the official file."
    )
