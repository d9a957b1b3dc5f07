"""Peak memory of Ray's trial worker processes, read from /proc (Linux) while a search runs."""

from __future__ import annotations

import os
import threading
from pathlib import Path


class WorkerMemory:
    """Peak RSS (VmHWM) of every Ray trial worker process, sampled from /proc while a search runs.

    A trial runs in a worker whose title Ray sets to `ray::ImplicitFunc...` (the function
    trainable's actor); the kernel keeps each process's peak, so sampling every 0.5 s misses
    only workers that live shorter than that."""

    def __init__(self) -> None:
        self.peak_mb: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "WorkerMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for pid, mb in _trial_workers().items():
                self.peak_mb[pid] = max(mb, self.peak_mb.get(pid, 0.0))


def _trial_workers() -> dict[int, float]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if not Path(f"/proc/{entry}/cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                continue
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        peak = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
        if peak:
            found[int(entry)] = int(peak[0]) / 1024  # kB -> MB
    return found
