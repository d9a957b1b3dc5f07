"""An on-disk cache of featurized arrays: one .npz per key, written atomically.

Two processes may build the same entry at once: each writes a private temp file in the
cache directory and renames it into place (os.replace is atomic on one filesystem), so
a reader sees either no entry or a whole one, and no temp file is left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

# Bump when what an entry holds, or how features are computed, changes.
# 2: keys name every data file (size, mtime, content digest) and the extractor's library versions.
FORMAT_VERSION = 2
KEY_ARRAY = "__key__"

Arrays = dict[str, np.ndarray]


def default_cache_dir() -> Path:
    env = os.environ.get("TUNER_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "tuner" / "features"


def key_json(key: dict[str, Any]) -> str:
    return json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True, separators=(",", ":"))


def entry_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(key_json(key).encode()).hexdigest()[:24]
    prefix = "-".join(str(key.get(k, "")) for k in ("dataset", "feature_extractor") if k in key)
    return cache_dir / f"{prefix or 'features'}-{digest}.npz"


class BrokenEntry(ValueError):
    """A cache entry that is not what write_entry writes: rebuilt, with a warning."""


def read_entry(
    path: Path, key: dict[str, Any], names: Iterable[str] | None = None
) -> Arrays | None:
    """The cached arrays among `names` (None: all), or None when absent, unreadable or written for
    another key.

    The key is read first, and then only the arrays asked for: nothing else in a tampered
    entry is decompressed. np.savez stores members uncompressed, so a member (or an array's
    header) that claims more bytes than the file holds is refused before anything is allocated.
    """
    try:
        with _open_regular(path) as f, zipfile.ZipFile(f) as zf:
            size = os.fstat(f.fileno()).st_size
            if KEY_ARRAY + ".npy" not in zf.namelist() or str(
                _member(zf, KEY_ARRAY, size)
            ) != key_json(key):
                return None
            stored = [
                n.removesuffix(".npy")
                for n in zf.namelist()
                if n.endswith(".npy") and n != KEY_ARRAY + ".npy"
            ]
            wanted = stored if names is None else [n for n in names if n in stored]
            return {name: _member(zf, name, size) for name in wanted}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile) as err:
        warnings.warn(f"rebuilding the unreadable feature cache entry {path}: {err}", stacklevel=2)
        return None


@contextlib.contextmanager
def _open_regular(path: Path) -> Iterator[BinaryIO]:
    # O_NONBLOCK: opening a FIFO put in the entry's place would otherwise wait for a writer forever.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BrokenEntry("it is not a regular file")
        os.set_blocking(fd, True)
        yield f


def _member(zf: zipfile.ZipFile, name: str, file_size: int) -> np.ndarray:
    info = zf.getinfo(name + ".npy")
    if info.compress_type != zipfile.ZIP_STORED or info.file_size > file_size:
        raise BrokenEntry(
            f"{info.filename} is compressed or declares {info.file_size} bytes in a file of "
            f"{file_size}; tuner stores them uncompressed"
        )
    with zf.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _fortran, dtype = read_header(member)
    if dtype.hasobject or math.prod(shape) * dtype.itemsize > info.file_size:
        raise BrokenEntry(
            f"{info.filename} declares a {dtype} array of shape {shape}, more than its "
            f"{info.file_size} bytes hold"
        )
    with zf.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def write_entry(path: Path, key: dict[str, Any], arrays: Arrays) -> None:
    """Write the .npz (and a JSON sidecar naming its key, for humans) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**arrays, KEY_ARRAY: np.asarray(key_json(key))}
    _atomic_write(path, lambda f: np.savez(f, **payload))
    sidecar = json.dumps(json.loads(key_json(key)), indent=2, sort_keys=True).encode() + b"\n"
    _atomic_write(path.with_suffix(".json"), lambda f: f.write(sidecar))


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_build(
    cache_dir: Path,
    key: dict[str, Any],
    build: Callable[[], Arrays],
    problem: Callable[[Arrays], str | None] = lambda _arrays: None,
    names: Iterable[str] | None = None,
) -> tuple[Arrays, bool]:
    """(arrays, hit): the cached entry for `key` (its arrays among `names`, None: all), or
    `build()`'s arrays, stored for next time.

    `problem` says what is wrong with a readable entry (missing arrays, wrong shapes), or None:
    such an entry is rebuilt, as an unreadable one is. A cache directory that cannot be written
    is not fatal: the arrays are returned uncached.
    """
    path = entry_path(cache_dir, key)
    cached = read_entry(path, key, names)
    if cached is not None:
        wrong = problem(cached)
        if wrong is None:
            return cached, True
        warnings.warn(f"rebuilding the feature cache entry {path}: {wrong}", stacklevel=2)
    arrays = build()
    try:
        write_entry(path, key, arrays)
    except OSError as err:
        warnings.warn(f"could not write the feature cache entry {path}: {err}", stacklevel=2)
    return arrays, False
