"""Data files opened as untrusted: regular files only, and an open never waits on a FIFO."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tuner.errors import TunerError


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
        raise TunerError(
            f"{dataset}: {path} is not a regular file (it is a {_file_kind(mode)}). Data files "
            f"must be plain files: remove it or replace it with one."
        )


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")
