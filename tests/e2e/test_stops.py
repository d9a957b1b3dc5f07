"""Stops as users meet them, with real processes and real signals: SIGTERM and SIGHUP from a
launcher that left SIGINT ignored (`tuner ... &` in a script, `trap '' INT`) or not, in every phase
of a search, and in `tuner ui`, `train`, `sync` and `embed`; a SIGKILLed driver's local Ray.

A search is held in a phase by TUNER_TEST_HOLD (tuner/system/processes.py's hold_point). Each real
search costs ~20-30 s here, so each phase is stopped once and the signal x SIGINT-disposition
pairs are spread over the phases, each pair at least once (the trials phase is
tests/e2e/test_search_guard.py's, whose running search meets both signals):

    setup: SIGTERM, ignored        data: SIGHUP, not ignored      trials: SIGTERM, ignored
    final test: SIGHUP, ignored    models: SIGTERM, not ignored   trials: SIGHUP, not ignored

A driver SIGKILLed alone during the trials (its Ray ended by the watchdog, then resumed) is step 2
of tests/e2e/test_search.py's test_interrupt_kill_and_resume.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.drivers import (
    free_port,
    gone,
    reported_bytes,
    search_args,
    sigint_ignored,
    start_driver,
    wait_for,
    wait_for_a_report,
    watchdogs,
)
from tests.e2e.test_search_guard import run_statuses
from tests.stores import empty_store
from tuner.system.processes import end_session, proc_stat, session_pids

SPACE = """\
name: stops
search: grid
max_concurrent: 1
fixed: {{hidden_dims: [16], batch_size: 32, knn_k: 3, iterations: {iterations}, \
eval_every: {every}}}
params:
  latent_dim: {{grid: [2, 3]}}
"""


def held(proc: subprocess.Popen, log: Path, phase: str, ignore_int: bool) -> None:
    wait_for(
        lambda: f"holding in phase {phase} " in log.read_text(),
        proc,
        240,
        f"the {phase} phase",
        log,
    )
    assert sigint_ignored(proc.pid) == ignore_int  # the launcher case under test, in force


def stopped(proc: subprocess.Popen, sig: int, log: Path, timeout: float = 90) -> int:
    """Send `sig` to the process alone (as `kill` does); its exit code. Nothing of its session or
    its Ray's watchdog may outlive it."""
    try:
        proc.send_signal(sig)
        code = proc.wait(timeout=timeout)
        assert gone(lambda: session_pids(proc.pid), 15) is not None, (
            f"left behind: {session_pids(proc.pid)}\n{log.read_text()[-3000:]}"
        )
        assert gone(lambda: watchdogs(proc.pid), 15) is not None
    finally:
        end_session(proc.pid, grace=0.0)
    return code


def resume_finishes(args: list[str], db: Path) -> None:
    """`tuner search --resume` runs to the end and leaves the search and both trials FINISHED. It
    runs in this process: what is checked is what the stop left behind, and a driver of its own
    would pay its imports again (about 6 core-s of the 20 a search costs)."""
    from tuner.cli import main

    assert main([*args, "--resume"]) == 0
    assert run_statuses(db) == {"search": ["FINISHED"], "trial": ["FINISHED"] * 2}


# Trials a --resume finishes in seconds.
SHORT = (200, 100)
# Trials for a test that needs one running when it acts: started with hold="trials", each report
# waits a second (tuner/system/processes.py's pace_point), so a trial lasts 24 s or more on any
# machine, on an idle core, and goes on reporting (a full disk is met by the next report's
# writes); the --resume, unpaced, finishes both in seconds.
PACED = (600, 25)


def space(tmp_path: Path, iterations: int, every: int, uri: str | None = None) -> list[str]:
    (tmp_path / "stops.yaml").write_text(SPACE.format(iterations=iterations, every=every))
    return search_args(tmp_path / "stops.yaml", tmp_path, uri=uri)


# ------------------------------------------------------------------ a search, phase by phase


@pytest.mark.slow
@pytest.mark.parametrize(
    "phase,sig,ignore_int",
    [("setup", signal.SIGTERM, True), ("data", signal.SIGHUP, False)],
    ids=["setup-SIGTERM-int-ignored", "data-SIGHUP"],
)
def test_a_stop_before_the_trials_leaves_no_run_and_no_ray(
    tmp_path: Path, phase: str, sig: int, ignore_int: bool
) -> None:
    log = tmp_path / "driver.log"
    proc = start_driver(space(tmp_path, *SHORT), log, ignore_int=ignore_int, hold=phase)
    held(proc, log, phase, ignore_int)
    # the driver and its local Ray (GCS, raylet, agents, ...)
    assert len(session_pids(proc.pid)) > 3
    assert stopped(proc, sig, log) == 130, log.read_text()[-3000:]
    text = log.read_text()
    assert "tuner search: interrupted" in text and "Traceback" not in text, text[-3000:]
    assert "RUNNING" not in sum(run_statuses(tmp_path / "mlflow.db").values(), [])


@pytest.mark.slow
def test_stops_after_the_trials_then_resume_sync_and_embed(tmp_path: Path) -> None:
    """The final test (SIGHUP, SIGINT ignored) and model logging (SIGTERM): the parent ends KILLED
    and --resume finishes the search; then `tuner sync` and `tuner embed` are stopped too."""
    args, db = space(tmp_path, *SHORT), tmp_path / "mlflow.db"
    for phase, sig, ignore_int in (
        ("final test", signal.SIGHUP, True),
        ("models", signal.SIGTERM, False),
    ):
        log = tmp_path / f"{phase}.log"
        proc = start_driver(
            [*args, *(["--resume"] if phase == "models" else [])],
            log,
            ignore_int=ignore_int,
            hold=phase,
        )
        held(proc, log, phase, ignore_int)
        assert stopped(proc, sig, log) == 130, log.read_text()[-3000:]
        assert "tuner search: interrupted" in log.read_text()
        assert run_statuses(db) == {"search": ["KILLED"], "trial": ["FINISHED"] * 2}

    resume_finishes(args, db)

    # tuner sync, stopped once it holds the search's runs open: none stays RUNNING.
    log = tmp_path / "sync.log"
    proc = start_driver(
        ["sync", "--storage-path", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{db}"],
        log,
        ignore_int=True,
        hold="sync",
    )
    held(proc, log, "sync", True)
    assert (
        stopped(proc, signal.SIGTERM, log) == 130 and "tuner sync: interrupted" in log.read_text()
    )
    assert run_statuses(db) == {"search": ["FINISHED"], "trial": ["FINISHED"] * 2}

    log = tmp_path / "embed.log"
    out = tmp_path / "z.parquet"
    proc = start_driver(
        [
            "embed",
            "--model",
            "models:/stops@champion",
            "--dataset",
            "digits",
            "--out",
            str(out),
            "--tracking-uri",
            f"sqlite:///{db}",
        ],
        log,
        ignore_int=True,
        hold="embed",
    )
    held(proc, log, "embed", True)
    assert (
        stopped(proc, signal.SIGHUP, log) == 130 and "tuner embed: interrupted" in log.read_text()
    )
    assert not out.exists()


# ------------------------------------------------------------------ the other long-running commands


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig,ignore_int",
    [(signal.SIGINT, False), (signal.SIGTERM, True)],
    ids=["SIGINT", "SIGTERM-int-ignored"],
)
def test_ui_stops_its_server_within_5_s(tmp_path: Path, sig: int, ignore_int: bool) -> None:
    """Ctrl-C, and SIGTERM with SIGINT ignored (as under nohup): `tuner ui` exits 0 within 5 s and
    no server process or web worker is left holding its port. The two reach `tuner ui` by
    different handlers, Python's own and tuner's; a closed terminal's SIGHUP takes SIGTERM's
    (tests/system/test_processes.py, and for real in a search and `tuner embed` above), so it
    would start a third UI (about 11 core-s) to check nothing more."""
    import mlflow

    mlflow.MlflowClient(empty_store(tmp_path, "m.db")).create_experiment("x")  # a store to serve
    port = free_port()
    log = tmp_path / "ui.log"
    proc = start_driver(
        ["ui", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--port", str(port)],
        log,
        ignore_int=ignore_int,
    )
    try:
        wait_for(
            lambda: _answers(f"http://127.0.0.1:{port}/health"), proc, 120, "the UI answering", log
        )
        assert sigint_ignored(proc.pid) == ignore_int
        server = _children(proc.pid)
        assert server, "tuner ui started no server"
        assert servers_on(port)  # the check below would pass for a wrong port too
        started = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        took = time.monotonic() - started
        assert took < 5, f"tuner ui took {took:.1f} s to stop"
        print(
            f"tuner ui ({'SIGINT ignored' if ignore_int else 'SIGINT default'}) stopped {took:.1f} "
            f"s after {signal.Signals(sig).name}"
        )
        # server, workers
        assert gone(lambda: [p for s in server for p in session_pids(s)], 1) is not None
        assert not _answers(f"http://127.0.0.1:{port}/health")
        assert servers_on(port) == []  # no web worker left holding the port
        assert f"http://127.0.0.1:{port}" in log.read_text()  # the link it printed
    finally:
        for s in _children(proc.pid):
            end_session(s, grace=0.0)
        end_session(proc.pid, grace=0.0)


@pytest.mark.slow
def test_train_stops_on_sigterm_with_sigint_ignored(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    proc = start_driver(
        [
            "train",
            "--set",
            "iterations=1000000",
            "--set",
            "eval_every=50",
            "--set",
            "hidden_dims=[16]",
        ],
        log,
        ignore_int=True,
    )
    wait_for(lambda: "iteration 50:" in log.read_text(), proc, 120, "training under way", log)
    assert sigint_ignored(proc.pid)
    started = time.monotonic()
    assert stopped(proc, signal.SIGTERM, log, timeout=30) == 130
    took = time.monotonic() - started
    assert took < 5 and "tuner train: interrupted" in log.read_text()
    print(f"tuner train (SIGINT ignored) exited 130 {took:.1f} s after SIGTERM")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def servers_on(port: int) -> list[int]:
    """Pids of mlflow server processes (and their web workers) started for this port."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mlflow" in b" ".join(argv) and str(port).encode() in argv:
            found.append(int(entry.name))
    return found


def _children(pid: int) -> list[int]:
    return [
        int(e)
        for e in os.listdir("/proc")
        if e.isdigit() and (f := proc_stat(e)) and int(f[1]) == pid
    ]


# ------------------------------------------------------------------ a full disk


@pytest.fixture
def small_disks(tmp_path: Path):
    """Two real 24 MiB tmpfs, mounted for the test (CI runs as root); skipped where mounting is
    not allowed."""
    mounted = []
    try:
        for name in ("small-a", "small-b"):
            mnt = tmp_path / name
            mnt.mkdir()
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                pytest.skip(
                    "cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): "
                    f"{done.stderr.strip()}"
                )
            mounted.append(mnt)
        yield mounted
    finally:
        for mnt in mounted:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path) -> Path:
    """Write zeros until the filesystem refuses: it is then full for everyone."""
    filler = mnt / "filler"
    # unbuffered: nothing left to flush (and fail) at close
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as err:
            assert err.errno == 28
    return filler


@pytest.mark.slow
def test_a_disk_that_fills_mid_search_stops_it_with_one_message_and_resume_finishes(
    tmp_path: Path, small_disks: list[Path]
) -> None:
    """Tune's storage path on one small disk, the SQLite store on another. The storage path fills
    during the trials; then, resumed, the store's disk fills during the trials; then, with room
    again, --resume finishes the search."""
    storage_disk, store_disk = small_disks
    results, db = storage_disk / "ray", store_disk / "mlflow.db"
    args = space(tmp_path, *PACED, uri=f"sqlite:///{db}")  # made by the search, on its disk
    args[args.index("--storage-path") + 1] = str(results)

    log = tmp_path / "storage-full.log"
    full_disk_stops_the_search(args, log, results, storage_disk, since=0)
    statuses = run_statuses(db)  # the store had room: every run it holds was closed
    assert statuses["search"] == ["KILLED"] and "RUNNING" not in statuses["trial"], statuses

    log = tmp_path / "store-full.log"
    since = reported_bytes(results, "stops")
    text = full_disk_stops_the_search([*args, "--resume"], log, results, store_disk, since)
    # nothing could be written there: the message says the runs stay RUNNING until --resume
    assert "show RUNNING until then" in text

    resume_finishes(args, db)


def full_disk_stops_the_search(
    args: list[str], log: Path, results: Path, disk: Path, since: int
) -> str:
    """Start the paced search, fill `disk` once a trial has reported (past `since` bytes of
    results), and check the driver's exit and its one message; the disk has room again after."""
    proc = start_driver(args, log, hold="trials")
    try:
        wait_for_a_report(proc, results, "stops", log, since=since)
        filler = fill(disk)
        assert proc.wait(timeout=240) == 2, log.read_text()[-3000:]
    finally:
        end_session(proc.pid, grace=0.0)
    filler.unlink()
    text = log.read_text()
    assert f"tuner search: error: no space left on the filesystem mounted at {disk} (" in text, (
        text[-3000:]
    )
    # One message, the last word; no traceback of the driver's (Tune logs the failed trial's own).
    assert text.strip().splitlines()[-1].startswith("tuner search: error: no space left on"), text[
        -3000:
    ]
    assert text.count("tuner search: error") == 1 and "tuner/cli.py" not in text, text[-3000:]
    print(f"{disk.name} full: exit 2; {text.strip().splitlines()[-1]}")
    return text
