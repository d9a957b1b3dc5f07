"""Who else may touch a search's storage: one search per experiment at a time, and no directory
that other users can write to. Ray-free and MLflow-free.

`--resume` and `tuner sync` make Tune unpickle state from the storage path, and unpickling runs
whatever code the file names: a local storage directory another user can write to is refused.

A running search holds a lock per experiment, beside its directory: `<storage>/.<experiment>.lock`.
Locally it is an `fcntl.flock` on that file, which the kernel drops when the driver dies, however
it dies. Object stores (s3://, gs://) have no such lock: the file there is an object holding the
owner's pid, host and start time, checked before a search and deleted when it ends. It is best
effort: two drivers starting in the same second can both miss it, and one that was SIGKILLed
leaves it behind (a driver on the same host whose pid is gone is ignored; elsewhere, delete it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs

from tuner.errors import TunerError
from tuner.system.tune_storage import ExperimentDir


def check_private(exp_dir: ExperimentDir) -> None:
    """Refuse a local storage directory (or the experiment directory in it) that another user owns
    or can write to: tuner would unpickle what they put there. Sticky directories (/tmp) are
    fine."""
    if exp_dir.is_uri:
        return
    for path in (Path(exp_dir.path).parent, Path(exp_dir.path)):
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX
        if info.st_uid != os.getuid() or writable:
            why = (
                f"is owned by uid {info.st_uid}"
                if info.st_uid != os.getuid()
                else f"can be written by other users (mode {stat.filemode(info.st_mode)})"
            )
            raise TunerError(
                f"storage directory {path} {why}. --resume and tuner sync load Tune's pickled "
                f"state from there, and a pickle can run code: use a directory only you can write "
                f"to (chmod go-w {path}), or another --storage-path."
            )


def lock_name(exp_dir: ExperimentDir) -> str:
    return f"{exp_dir.parent_path.rstrip('/')}/.{exp_dir.name}.lock"


def _describe(text: str) -> str:
    try:
        held = json.loads(text)
        return (
            f"search {held['search_id']} (pid {held['pid']} on {held['host']}, started "
            f"{_when(held['started'])})"
        )
    except (ValueError, KeyError, TypeError, RecursionError):
        return "another search"


def _when(started: object) -> str:
    # A hand-edited lock can hold anything: a start time of 1e300 overflows localtime.
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return f"at an unreadable time {str(started)[:40]!r}"


def _refuse(exp_dir: ExperimentDir, holder: str, where: str) -> TunerError:
    return TunerError(
        f"experiment {exp_dir.name!r} in {exp_dir.uri} is in use by {holder}: two searches in one "
        f"directory would overwrite each other. Wait for it to end (or stop it with Ctrl-C / kill "
        f"-TERM), or pass another --experiment or --storage-path. Lock: {where}."
    )


@contextlib.contextmanager
def search_lock(exp_dir: ExperimentDir, search_id: str) -> Iterator[None]:
    """Hold the experiment's lock for the block; TunerError naming the holder when another search
    has it."""
    mine = json.dumps(
        {
            "search_id": search_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
        }
    )
    with (_object_lock if exp_dir.is_uri else _file_lock)(exp_dir, mine):
        yield


@contextlib.contextmanager
def _file_lock(exp_dir: ExperimentDir, mine: str) -> Iterator[None]:
    path = Path(lock_name(exp_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        _flock_or_refuse(fd, fcntl.LOCK_EX, exp_dir, str(path))
        os.ftruncate(fd, 0)
        os.pwrite(fd, mine.encode(), 0)
        # The file stays when released: removing it would let a waiting driver lock a deleted inode.
        yield
    finally:
        os.close(fd)  # releases the flock


def refuse_if_locked(exp_dir: ExperimentDir) -> None:
    """The lock's check alone, creating nothing: a second search is refused in the second it
    starts, not after starting a Ray. `search_lock` still takes the lock, and decides any race."""
    if exp_dir.is_uri:
        _refuse_held_object(exp_dir)
        return
    path = lock_name(exp_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return  # no lock file yet (or one search_lock will report on)
    try:
        _flock_or_refuse(fd, fcntl.LOCK_SH, exp_dir, path)  # released with the fd
    finally:
        os.close(fd)


def _flock_or_refuse(fd: int, how: int, exp_dir: ExperimentDir, path: str) -> None:
    """flock `fd` without waiting; held by another search: the refusal naming it."""
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refuse(
            exp_dir, _describe(os.pread(fd, 4096, 0).decode(errors="replace")), path
        ) from None


@contextlib.contextmanager
def _object_lock(exp_dir: ExperimentDir, mine: str) -> Iterator[None]:
    name, fs = lock_name(exp_dir), exp_dir.fs
    _refuse_held_object(exp_dir)
    fs.create_dir(exp_dir.parent_path, recursive=True)
    with fs.open_output_stream(name) as stream:
        stream.write(mine.encode())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            fs.delete_file(name)


def _refuse_held_object(exp_dir: ExperimentDir) -> None:
    name, fs = lock_name(exp_dir), exp_dir.fs
    if fs.get_file_info(name).type != pafs.FileType.File:
        return
    with fs.open_input_stream(name) as stream:
        text = stream.read(4096).decode(errors="replace")
    if not _stale(text):
        raise _refuse(
            exp_dir,
            _describe(text),
            f"{exp_dir.sibling_uri('.' + exp_dir.name + '.lock')} "
            f"(delete it if that search is no longer running)",
        )


def _stale(text: str) -> bool:
    """A lock object left by a driver on this host that is gone."""
    try:
        held = json.loads(text)
        if held["host"] != socket.gethostname():
            return False
        os.kill(int(held["pid"]), 0)
    except ProcessLookupError:
        return True
    # A pid beyond the C int os.kill takes names no process we could check: the lock counts as held.
    except (ValueError, KeyError, TypeError, OverflowError, PermissionError, RecursionError):
        return False
    return False
