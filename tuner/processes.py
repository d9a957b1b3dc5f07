"""Processes started in a session of their own, found and ended together.

`tuner ui` starts `mlflow server`, whose web workers outlive a plain terminate; tests and
benchmarks start drivers and Ray nodes whose raylet, GCS and agents do the same. Each is
started with `start_new_session=True`, so its session id is its pid and everything it
spawned can be found in /proc and ended, exactly those and nothing else. Linux only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Iterator


def session_pids(sid: int) -> list[int]:
    """The pids of the live processes in session `sid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                # After the command's closing parenthesis: state, ppid, pgrp, session, ...
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                found.append(int(entry))
    return found


def end_session(sid: int, grace: float = 10.0) -> None:
    """SIGTERM every process of the session, then SIGKILL what is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in session_pids(sid):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.1)


_FORWARDED = (signal.SIGTERM, signal.SIGHUP)
_active: list[bool] = []  # one entry per terminate_as_interrupt block open


def _forward(signum: int, frame: object) -> None:
    os.kill(os.getpid(), signal.SIGINT)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (a `kill`, a closed terminal, a scheduler's stop) handled as Ctrl-C.

    They are re-sent as SIGINT, so whatever handles Ctrl-C handles them too: Python's
    KeyboardInterrupt, or Ray Tune's own SIGINT handler, which stops the trials and saves the
    search's state for --resume. Main thread only, as Python's signal handlers are.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _forward) for sig in _FORWARDED}
    _active.append(True)
    try:
        yield
    finally:
        _active.pop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def reclaim_termination_signals() -> None:
    """Set the forwarding handlers again where `terminate_as_interrupt` is active.

    `ray.init` replaces the SIGTERM handler (with `sys.exit`) and its core worker installs a C++
    failure handler: SIGTERM then logged a stack and aborted the driver (exit -6), with trials,
    MLflow runs and Ray left behind. Call this after anything that may do the same.
    """
    if _active and threading.current_thread() is threading.main_thread():
        for sig in _FORWARDED:
            signal.signal(sig, _forward)
