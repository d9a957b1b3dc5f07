"""Peak memory of Ray's trial worker processes, read from /proc (Linux) while a search runs.

Two figures per worker: peak RSS (VmHWM, kept by the kernel) counts every page the process
touched, shared library pages included: torch's libraries alone put ~700 MB there, shared by
every process that loads them. Private memory (Private_Clean + Private_Dirty of smaps_rollup,
sampled every 0.5 s) is what each trial adds to the machine.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


class WorkerMemory:
    """Peak RSS and peak private memory (MB) of every Ray trial worker, by pid.

    A trial runs in a worker whose title Ray sets to `ray::ImplicitFunc...` (the function
    trainable's actor); sampling every 0.5 s misses only workers that live shorter than that."""

    def __init__(self) -> None:
        self.peak_mb: dict[int, float] = {}
        self.private_mb: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for pid, (peak, private) in _trial_workers().items():
                self.peak_mb[pid] = max(peak, self.peak_mb.get(pid, 0.0))
                self.private_mb[pid] = max(private, self.private_mb.get(pid, 0.0))


def trial_worker_pids(ancestor: int | None = None) -> list[int]:
    """The pids of Ray's trial workers now (a worker exists from its trial's start); with
    `ancestor`, only its descendants: the workers of a Ray this process started."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                pids.append(int(entry))
        except OSError:  # ended while we looked
            continue
    return [pid for pid in pids if ancestor is None or _descends(pid, ancestor)]


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == ancestor:
            return True
    return False


def _trial_workers() -> dict[int, tuple[float, float]]:
    found = {}
    for pid in trial_worker_pids():
        entry = str(pid)
        try:
            peak = _kb(Path(f"/proc/{entry}/status").read_text(), ("VmHWM",))
            private = _kb(
                Path(f"/proc/{entry}/smaps_rollup").read_text(), ("Private_Clean", "Private_Dirty")
            )
        except OSError:
            continue
        found[int(entry)] = (peak / 1024, private / 1024)
    return found


def _kb(text: str, keys: tuple[str, ...]) -> float:
    return float(
        sum(int(line.split()[1]) for line in text.splitlines() if line.split(":")[0] in keys)
    )
