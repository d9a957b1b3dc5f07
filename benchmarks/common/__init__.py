"""What the benchmarks share: the machine's load, one JSON line, timing, the MNIST directory,
scratch folders and tuner run as a subprocess.

Every script runs from the repository root as a module (`python -m benchmarks.bench_search`),
so `benchmarks` is importable without touching `sys.path`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the repository: search_spaces/, examples/
CORES = os.cpu_count() or 1


def load_average() -> float:
    """The 1-minute load average: other work on the machine distorts every timing."""
    return round(os.getloadavg()[0], 2)


@dataclass
class Machine:
    """The load average before and after a measurement, reported beside its figures."""

    before: float = field(default_factory=load_average)
    after: float | None = None

    def done(self) -> dict[str, float | int | None]:
        self.after = load_average()
        return {
            "load_average_before": self.before,
            "load_average_after": self.after,
            "cores": CORES,
        }

    def line(self) -> str:
        return (
            f"load average (1 min) before {self.before:.2f}, after {self.after:.2f} on {CORES} "
            "cores: other work on the machine distorts the timings"
        )


def emit_json(figures: dict[str, Any]) -> None:
    """The figures as one JSON line, the last line of the output (NaN and paths made plain)."""
    print(json.dumps(figures, default=str, allow_nan=True), flush=True)


@contextlib.contextmanager
def timed(spent: dict[str, tuple[float, float]], name: str) -> Iterator[None]:
    """(wall seconds, this process's CPU seconds) of the block, into `spent[name]`."""
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        spent[name] = (time.perf_counter() - wall, time.process_time() - cpu)


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")


def add_data_dir(parser: argparse.ArgumentParser, what: str = "the MNIST parts") -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"MNIST in torchvision's layout (DIR/MNIST/raw/...); {what} are skipped without it",
    )


def mnist_dir(data_dir: Path | None) -> Path | None:
    """`data_dir` when it holds MNIST in torchvision's layout, else None (the caller skips)."""
    if data_dir is not None and (Path(data_dir) / "MNIST" / "raw").is_dir():
        return Path(data_dir)
    return None


def skipped_text(data_dir: Path | None) -> str:
    if data_dir is None:
        return "skipped: needs --data-dir (MNIST in torchvision's layout)"
    return f"skipped: no MNIST/raw under --data-dir {data_dir}"


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder, removed afterwards; short, since Ray's socket paths live under it."""
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        yield Path(name)


def run_python(
    args: Sequence[str | Path], what: str, cwd: Path = ROOT, timeout: float | None = None
) -> str:
    """This interpreter on `args` (a script or `-m module`), from the repository root; its stdout.
    A failure stops the benchmark with the command's last output."""
    cmd = [sys.executable, *map(str, args)]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise SystemExit(f"{what}: `{' '.join(cmd[1:])}` exited {done.returncode}:\n{tail}")
    return done.stdout


def run_tuner(args: Sequence[str | Path], what: str, timeout: float | None = None) -> str:
    """`tuner ARGS` as a user runs it (the CLI in a child process); its stdout."""
    return run_python(["-m", "tuner.cli", *args], what, timeout=timeout)


def last_json(stdout: str) -> dict[str, Any]:
    """The last line of `stdout` that is a JSON object (what `--json` commands end with)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in the output:\n{stdout[-2000:]}")
