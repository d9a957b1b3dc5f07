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
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def proc_stat(pid: int | str) -> list[str] | None:
    """/proc/PID/stat after the command's closing parenthesis: state, ppid, pgrp, session, ...
    (field N of proc(5) at index N - 3); None when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def session_pids(sid: int) -> list[int]:
    """The pids of the live processes in session `sid`. A zombie is not live: it has ended and
    waits for its parent to read its status (`tuner ui`'s own server child did, until the
    wait after end_session, which therefore waited out its whole grace)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(entry)
            if fields is not None and fields[0] != "Z" and int(fields[3]) == sid:
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
_active: list[
    tuple[int, ...]
] = []  # per terminate_as_interrupt block open: the signals it forwards


def _forward(signum: int, frame: object) -> None:
    # What a SIGINT would do now, called directly rather than sent: a launcher may have left SIGINT
    # ignored (`tuner ... &` in a script, `trap '' INT`, some supervisors), and a sent SIGINT
    # would then do nothing.
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):  # Python's default_int_handler, or Ray Tune's (stop, save state)
        handler(signal.SIGINT, frame)
    else:  # SIG_IGN (or SIG_DFL): Ctrl-C's outcome all the same
        raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (a `kill`, a closed terminal, a scheduler's stop) handled as Ctrl-C.

    They call the SIGINT handler in place, so whatever handles Ctrl-C handles them too: Python's
    KeyboardInterrupt, or Ray Tune's own SIGINT handler, which stops the trials and saves the
    search's state for --resume; with SIGINT ignored they raise KeyboardInterrupt. One the launcher
    ignores (nohup's SIGHUP) stays ignored. Main thread only, as Python's signal handlers are.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A signal the launcher ignores stays ignored: `nohup tuner search &` must outlive its terminal.
    forwarded = tuple(sig for sig in _FORWARDED if signal.getsignal(sig) is not signal.SIG_IGN)
    previous = {sig: signal.signal(sig, _forward) for sig in forwarded}
    _active.append(forwarded)
    try:
        yield
    finally:
        _active.pop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def interrupt_handler_kept() -> Iterator[None]:
    """The SIGINT handler as it was before the block, again after it.

    Ray Tune's fit installs its own SIGINT handler and leaves it behind: after fit a Ctrl-C (or
    SIGTERM) would only set a flag nobody reads, and the final test and model logging would run on.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if before is not None:
            signal.signal(signal.SIGINT, before)


def reclaim_termination_signals() -> None:
    """Set the forwarding handlers again where `terminate_as_interrupt` is active.

    `ray.init` replaces the SIGTERM handler (with `sys.exit`) and its core worker installs a C++
    failure handler: SIGTERM then logged a stack and aborted the driver (exit -6), with trials,
    MLflow runs and Ray left behind. Call this after anything that may do the same.
    """
    if _active and threading.current_thread() is threading.main_thread():
        for sig in _active[-1]:
            signal.signal(sig, _forward)


HOLD_ENV = "TUNER_TEST_HOLD"


def hold_point(phase: str) -> None:
    """A test hook: with TUNER_TEST_HOLD=<phase> the process says so on stderr and waits here
    until a signal ends the wait, so tests can stop a command in exactly that phase."""
    if os.environ.get(HOLD_ENV) != phase:
        return
    print(
        f"tuner: holding in phase {phase} (pid {os.getpid()}; {HOLD_ENV})",
        file=sys.stderr,
        flush=True,
    )
    while True:
        time.sleep(0.05)


def pace_point(phase: str, pause: float = 1.0) -> None:
    """A test hook: with TUNER_TEST_HOLD=<phase> the process pauses here `pause` seconds each time
    it passes, and goes on. A trial paced at each report lasts as long as a test needs without
    keeping a core busy, yet stops as soon as asked: Tune's stop waits for the trial's next report,
    which a hold_point would never make (Tune then kills the trial after 10 s)."""
    if os.environ.get(HOLD_ENV) == phase:
        time.sleep(pause)
