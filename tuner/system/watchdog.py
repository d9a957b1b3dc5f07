"""A watchdog that ends a driver's local Ray when the driver ends, however it ends (SIGKILL
included).

Ray ends the GCS and raylet it started with their driver (PR_SET_PDEATHSIG), but in Ray 2.60
the raylet's children, its dashboard and runtime-env agents, notice the raylet's death and then
hang on their way out, reparented to init and deaf to SIGTERM: every SIGKILLed or OOM-killed
search left them running. `ray stop` would end them and every other Ray on the machine too.

So the driver starts this process (`python -m tuner.system.watchdog DRIVER_PID ROOT_PID...`, in a
session of its own so that a signal to the driver's process group does not take it along). It
follows the root processes (those `ray.init` started) and every process they start, by pid and start
time, and once the driver is gone it ends exactly those still alive (SIGTERM, then SIGKILL), then
exits. Linux only, no Ray import: it must start in a fraction of a second.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from tuner.system.processes import proc_stat

POLL_S = 1.0  # how often the tree is walked: a process started and orphaned within it is missed
GRACE_S = 2.0  # after SIGTERM, before SIGKILL: Ray's agents ignore SIGTERM once their raylet died


def _start_time(pid: int) -> str | None:
    fields = proc_stat(pid)  # field 22 of proc(5): start time since boot, in clock ticks
    return None if fields is None or fields[0] == "Z" else fields[19]


def _same(pid: int, started: str) -> bool:
    """Still that process, not a reused pid."""
    return _start_time(pid) == started


def _grow(tracked: dict[int, str]) -> None:
    """Add every live process whose parent is tracked, to the closure; drop the dead."""
    for pid in [p for p, started in tracked.items() if not _same(p, started)]:
        del tracked[pid]
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(entry)
            if fields is not None and fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append((int(entry), fields[19]))
    todo = list(tracked)
    while todo:
        for child, started in children.get(todo.pop(), []):
            if child not in tracked:
                tracked[child] = started
                todo.append(child)


def _signal_all(tracked: dict[int, str], sig: int) -> None:
    for pid, started in tracked.items():
        if _same(pid, started):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def end_tracked(tracked: dict[int, str], grace: float = GRACE_S) -> None:
    """SIGTERM what is left of `tracked` (and what it started since), SIGKILL it after `grace` s."""
    _grow(tracked)
    _signal_all(tracked, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _grow(tracked)
        if not tracked:
            return
        time.sleep(0.1)
    _signal_all(tracked, signal.SIGKILL)


def watch(driver: int, roots: list[int], poll: float = POLL_S) -> None:
    """Follow `roots` and their descendants while `driver` lives; end what is left of them after."""
    driver_started = _start_time(driver)
    tracked = {pid: started for pid in roots if (started := _start_time(pid)) is not None}
    while driver_started is not None and _same(driver, driver_started):
        _grow(tracked)
        time.sleep(poll)
    end_tracked(tracked)


def main(argv: list[str]) -> int:
    # Ctrl-C in the driver's terminal and a closed terminal are the driver's business, not ours.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    driver, *roots = (int(a) for a in argv)
    watch(driver, roots)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
