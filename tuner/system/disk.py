"""A full filesystem, said once: ENOSPC found in an error or its causes (Python's OSError, pyarrow's
text, SQLite's "database or disk is full", a trial's traceback), and which of a command's
filesystems has no space left. No Ray, no MLflow."""

from __future__ import annotations

import errno
import os
from pathlib import Path

_FULL_TEXTS = ("No space left on device", "database or disk is full", "[Errno 28]", "[errno 28]")
NEARLY_FULL = 1 << 20  # bytes free below which a filesystem counts as the full one


def is_disk_full(err: BaseException | str | None) -> bool:
    if isinstance(err, str):
        return any(text in err for text in _FULL_TEXTS)
    seen, hops = err, 0
    while seen is not None and hops < 20:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC or is_disk_full(str(seen)):
            return True
        seen, hops = seen.__cause__ or seen.__context__, hops + 1
    return False


def mount_point(path: str | Path) -> Path:
    """The mount point of the filesystem that holds `path` (or would, for a path not yet made)."""
    here = Path(os.path.abspath(path))
    while not here.exists() and here != here.parent:
        here = here.parent
    while not os.path.ismount(here):
        here = here.parent
    return here


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def full_filesystems(places: dict[str, str | Path | None]) -> str:
    """One phrase naming the full filesystem(s) among `places` (what -> local path; None: not
    local), with their free space; all of them, said not to be full, when none is below
    NEARLY_FULL."""
    found, seen = [], set()
    for what, path in places.items():
        if path is None:
            continue
        mount = mount_point(path)
        stat = os.statvfs(mount)
        free, size = stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize
        found.append(
            (
                free < NEARLY_FULL,
                f"the filesystem mounted at {mount} ({what} {path}: "
                f"{_size(free)} free of {_size(size)})",
                mount,
            )
        )
    full = [f for f in found if f[0]] or found
    named = []
    for _, text, mount in full:
        if mount not in seen:
            seen.add(mount)
            named.append(text)
    if not named:
        return "a filesystem this command writes to"
    # ENOSPC met elsewhere (a trial's /tmp or /dev/shm), or space freed since
    if not any(f[0] for f in found):
        return (
            " and ".join(named)
            + "; none of these is full now: the full one may be another this command "
            "writes to (such as /tmp or /dev/shm), or space was freed since"
        )
    return " and ".join(named)
