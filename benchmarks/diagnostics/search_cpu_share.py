"""Who gets the CPUs while a search runs: the trial workers, the driver, Ray's own processes, the
rest.

    python -m benchmarks.diagnostics.search_cpu_share [--trial-seconds 8] [--window 40]

bench_search.py's (a) grid (16 pairwise digits trials, 1 CPU each, 2 CPUs) runs while a thread
reads every process's CPU time from /proc (Linux) at the first trial's start (when the first
trial worker process, `ray::ImplicitFunc`, appears) and `--window` seconds later, inside the
trials' span. Whatever the trial workers do not get of the window's
capacity (CPUs x seconds) is what orchestration costs them: it is why trials in a search train
slower than alone. Process roles: trial workers (Ray actors running Tune's trainable), the
driver (this process), Ray (the driver's other descendants: raylet, GCS, agents, log monitor,
idle workers), and everything else on the machine.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections import Counter
from pathlib import Path

import ray
import torch

from benchmarks.bench_search import CPUS, scheduling_spec
from benchmarks.common import Machine, scratch
from benchmarks.common.workers import trial_worker_pids
from tuner.runner.ray_cluster import init_local_ray
from tuner.runner.search import run_search

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> dict[int, tuple[float, int, str]]:
    """pid -> (user + system CPU seconds, parent pid, command line) of every process now."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = (
                Path(f"/proc/{entry}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:  # ended while we looked
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        out[int(entry)] = ((int(fields[11]) + int(fields[12])) / TICKS, int(fields[1]), cmd)
    return out


def role(pid: int, table: dict[int, tuple[float, int, str]]) -> str:
    """driver (this process), trial workers and ray (its descendants), or other (the rest)."""
    if pid == os.getpid():
        return "driver"
    parent = table[pid][1]
    while parent > 1 and parent in table:
        if parent == os.getpid():
            return "trial workers" if "ImplicitFunc" in table[pid][2] else "ray"
        parent = table[parent][1]
    return "other"


def shares(before: dict, after: dict) -> Counter:
    spent: Counter = Counter()
    for pid, (seconds, _, _) in after.items():
        spent[role(pid, after)] += seconds - before.get(pid, (0.0,))[0]
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trial-seconds", type=float, default=8.0, help="training seconds a trial")
    parser.add_argument(
        "--window", type=float, default=40.0, help="seconds measured from the first trial's start"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    machine = Machine()
    searching = threading.Event()
    result: dict[str, Counter | float] = {}

    def sample() -> None:
        while not trial_worker_pids(os.getpid()):  # the first trial's worker: its trial has started
            if searching.wait(0.1):
                return  # the search ended before any trial started
        before, start = cpu_seconds(), time.perf_counter()
        time.sleep(args.window)
        result["spent"], result["wall"] = shares(before, cpu_seconds()), time.perf_counter() - start

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with scratch("search_cpu_share_") as tmp:
        spec = scheduling_spec(tmp, "cpu-share", args.trial_seconds)
        init_local_ray(CPUS)  # as a search starts its own
        try:
            run_search(
                spec,
                tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
                storage_path=tmp / "ray_results",
                verbose=False,
            )
        finally:
            searching.set()
            ray.shutdown()
    if "spent" not in result:
        raise SystemExit(
            f"the search ended within --window {args.window:g} s of its first trial: shorten it"
        )
    spent, wall = result["spent"], result["wall"]
    capacity = wall * (os.cpu_count() or CPUS)
    print(
        f"{wall:.1f} s from the first trial's start, {os.cpu_count()} CPUs: {capacity:.0f} CPU-s "
        f"of capacity; {sum(spent.values()):.1f} CPU-s used"
    )
    for name in ("trial workers", "driver", "ray", "other"):
        print(f"  {name:14s} {spent[name]:6.1f} CPU-s  {spent[name] / capacity:6.1%} of capacity")
    machine.done()
    print(machine.line())


if __name__ == "__main__":
    main()
