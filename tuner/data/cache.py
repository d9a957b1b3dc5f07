"""An on-disk cache of featurized arrays: one .npz per key, written atomically.

Two processes may build the same entry at once: each writes a private temp file in the
cache directory and renames it into place (os.replace is atomic on one filesystem), so
a reader sees either no entry or a whole one, and no temp file is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

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


def read_entry(path: Path, key: dict[str, Any]) -> Arrays | None:
    """The cached arrays, or None when absent, unreadable or written for another key."""
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile) as err:
        warnings.warn(f"rebuilding the unreadable feature cache entry {path}: {err}", stacklevel=2)
        return None
    if str(arrays.pop(KEY_ARRAY, "")) != key_json(key):
        return None
    return arrays


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


def load_or_build(cache_dir: Path, key: dict[str, Any], build: Callable[[], Arrays],
                  problem: Callable[[Arrays], str | None] = lambda _arrays: None) -> tuple[Arrays, bool]:
    """(arrays, hit): the cached entry for `key`, or `build()`'s arrays, stored for next time.

    `problem` says what is wrong with a readable entry (missing arrays, wrong shapes), or None:
    such an entry is rebuilt, as an unreadable one is. A cache directory that cannot be written
    is not fatal: the arrays are returned uncached.
    """
    path = entry_path(cache_dir, key)
    cached = read_entry(path, key)
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
