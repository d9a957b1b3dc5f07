"""`tuner` commands as a person starts them (a process of their own), for the end-to-end tests;
and fresh interpreters for what a process imports."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.paths import REPO_ROOT
from tests.stores import empty_store
from tuner.system.processes import HOLD_ENV, proc_stat


def default_stops() -> None:
    """SIGHUP and SIGTERM as a terminal leaves them (a child's preexec_fn), even where the suite
    runs under nohup: an ignored SIGHUP is inherited, and tuner rightly keeps it ignored, so a
    test that sends it would otherwise see a search that never stops."""
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def tuner_command(args: list[str]) -> list[str]:
    """`python -m tuner.cli ARGS` with this interpreter (driver_env puts this checkout first)."""
    return [sys.executable, "-m", "tuner.cli", *args]


def driver_env(hold: str | None = None) -> dict[str, str]:
    """The environment of a `tuner` command started by a test: this checkout's package, unbuffered
    output, and TUNER_TEST_HOLD only where the test asks for a hold (never one inherited)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop(HOLD_ENV, None)
    if hold:
        env[HOLD_ENV] = hold
    return env


def start_driver(
    args: list[str],
    log: Path,
    *,
    hold: str | None = None,
    ignore_int: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """`python -m tuner.cli ARGS` of this checkout, in its own session, so its Ray processes can be
    found and ended; SIGHUP and SIGTERM at their defaults (default_stops). `hold`: the phase to
    hold it in (tuner/system/processes.py's hold_point). `ignore_int`: started as a shell's
    `trap '' INT; exec ...` leaves it, SIGINT ignored (inherited across exec). `env`: variables
    set on top of driver_env's."""
    cmd = tuner_command(args)
    if ignore_int:
        cmd = ["bash", "-c", "trap '' INT; exec \"$@\"", "tuner", *cmd]
    with open(log, "a") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env={**driver_env(hold), **(env or {})},
            preexec_fn=default_stops,
        )


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python -m tuner.cli ARGS` of this checkout to its end, its output captured."""
    return subprocess.run(
        tuner_command(list(args)),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=driver_env(),
    )


def search_args(
    space: Path | str, tmp_path: Path, *extra: str, uri: str | None = None
) -> list[str]:
    """`search --space SPACE --tracking-uri URI --storage-path TMP/ray EXTRA...`: a search whose
    MLflow store (by default `sqlite:///TMP/mlflow.db`, tests.stores.empty_store) and Tune storage
    lie in the test's own folder."""
    return [
        "search",
        "--space",
        str(space),
        "--tracking-uri",
        uri or empty_store(tmp_path),
        "--storage-path",
        str(tmp_path / "ray"),
        *extra,
    ]


# Ports no one else hands out: above Ray's worker ports (`ray start`'s 10002-19999) and below the
# kernel's ephemeral range, from which every bind to port 0 and every outgoing connection takes its
# port. A port taken from that range (bind(0), then released) was once handed meanwhile to another
# test's Ray, whose gRPC server then answered the MLflow server's health check in binary.
OWN_PORTS_FROM = 20000


def free_port() -> int:
    """A local port nothing listens on now (bound, then released), outside the ranges the kernel
    and Ray give out, so nothing else takes it before the test's server binds it."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = OWN_PORTS_FROM
    candidates = range(OWN_PORTS_FROM, ephemeral_low)
    for port in random.SystemRandom().sample(candidates, min(64, len(candidates))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use, or in TIME_WAIT
                continue
            return port
    with socket.socket() as s:  # no such range here: the kernel's choice, as before
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dynamo_imported_after(*steps: str) -> list[bool]:
    """Whether a fresh interpreter that ran each of `steps` in turn had imported torch._dynamo
    (~1 s and over 80 MB of a process: what trial workers avoid, and the driver pays ahead of
    time), one answer per step. One interpreter for all the steps: each start costs seconds of
    imports."""
    # Each answer on a line of its own kind: a step may print lines of its own.
    check = "print('dynamo imported:', 'torch._dynamo' in sys.modules)"
    script = "import sys\n" + "".join(f"{step}\n{check}\n" for step in steps)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    return [
        line.split(": ", 1)[1] == "True"
        for line in out.stdout.splitlines()
        if line.startswith("dynamo imported: ")
    ]


def wait_for_a_report(
    proc: subprocess.Popen,
    storage: Path,
    experiment: str,
    log: Path,
    timeout: float = 240,
    since: int = 0,
) -> None:
    """Wait until a trial of `experiment` has written a result into Tune's `storage`, its results
    grown past `since` bytes (`reported_bytes` read before a resume: a report of the resumed
    search): the search is then in its trials phase, with one still running."""
    wait_for(
        lambda: reported_bytes(storage, experiment) > since,
        proc,
        timeout,
        "a trial reported",
        log,
    )


def reported_bytes(storage: Path, experiment: str) -> int:
    """The size of every trial's results so far: it grows with each report."""
    return sum(p.stat().st_size for p in storage.glob(f"{experiment}/run_trial_*/result.json"))


def wait_for(
    ready: Callable[[], object], proc: subprocess.Popen, timeout: float, what: str, log: Path
) -> None:
    """Poll `ready()` until it is true; fail (with the log's end) if the driver ends or time runs
    out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the search ended before {what}:\n{log.read_text()[-3000:]}"
        if ready():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def sigint_ignored(pid: int) -> bool:
    """Whether SIGINT is ignored in process `pid` (its SigIgn mask): the launcher case in force."""
    mask = next(
        line
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("SigIgn:")
    )
    return bool(int(mask.split()[1], 16) & (1 << (signal.SIGINT - 1)))


def watchdogs(driver: int) -> list[int]:
    """Pids of the live watchdogs (tuner/system/watchdog.py) that follow `driver`'s local Ray."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"tuner.system.watchdog" in argv
            and str(driver).encode() in argv
            and proc_stat(entry)[0] != "Z"
        ):
            found.append(int(entry))
    return found


def gone(pids: Callable[[], list[int]], timeout: float) -> float | None:
    """Seconds until `pids()` is empty, polled; None if it never was within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not pids():
            return time.monotonic() - start
        time.sleep(0.2)
    return None
