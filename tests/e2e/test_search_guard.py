"""Real drivers (subprocesses with a local Ray each), real SQLite MLflow, tiny digits trials:
a second search of a running experiment is refused, SIGTERM (from a launcher that left SIGINT
ignored) and SIGHUP stop a search in its trials as Ctrl-C does, and a storage error leaves no
parent run RUNNING."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.drivers import (
    driver_env,
    gone,
    search_args,
    sigint_ignored,
    start_driver,
    tuner_command,
    wait_for,
    wait_for_a_report,
    watchdogs,
)
from tuner.system.processes import end_session, session_pids

SPACE = """\
name: guard
search: grid
max_concurrent: 1
fixed: {hidden_dims: [16], batch_size: 32, knn_k: 3, iterations: 600, eval_every: 25}
# The first driver paces its trials (TUNER_TEST_HOLD=trials: a second at each of the 24 reports),
# so it is running still when the refusals are done, however fast the machine, on an idle core.
# The stop then meets the first trial running and the second not yet started (it gets no run).
params:
  latent_dim: {grid: [2, 3]}
"""


def run_statuses(db: Path) -> dict[str, list[str]]:
    """role (search / trial) -> statuses, read-only: the driver may still be writing."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            rows = con.execute(
                "SELECT tags.value, runs.status FROM runs JOIN tags ON tags.run_uuid = "
                "runs.run_uuid WHERE tags.key = 'tuner.role'"
            ).fetchall()
    except sqlite3.OperationalError:
        return {}
    out: dict[str, list[str]] = {}
    for role, status in rows:
        out.setdefault(role, []).append(status)
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig,ignore_int",
    [(signal.SIGTERM, True), (signal.SIGHUP, False)],
    ids=["SIGTERM-int-ignored", "SIGHUP"],
)
def test_a_second_search_is_refused_and_sigterm_stops_the_first_as_ctrl_c_does(
    tmp_path: Path, sig: int, ignore_int: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM from a launcher that left SIGINT ignored (`trap '' INT`), the case where Ray Tune's
    own SIGINT handler must still be the one called, and SIGHUP (a closed terminal, SIGINT at its
    default): each stops the trials as Ctrl-C does, the driver exiting 0 with the search KILLED and
    its --resume hint printed. From Tune's handler on the path is Ctrl-C's, whose saved state
    tests/e2e/test_search.py's test_interrupt_kill_and_resume resumes; so the check ends at the
    clean stop, the one place the signals could differ. The refused second search runs in this
    process: the lock it meets is the first driver's, wherever it runs. (tests/e2e/test_stops.py
    stops the other phases of a search.)"""
    from tuner.cli import main

    (tmp_path / "guard.yaml").write_text(SPACE)
    db, storage = tmp_path / "mlflow.db", tmp_path / "ray"
    args = search_args(tmp_path / "guard.yaml", tmp_path)
    log = tmp_path / "first.log"
    first = start_driver(args, log, hold="trials", ignore_int=ignore_int)
    try:
        # Until Tune's fit installs its handler (the one SIGTERM must reach): SIGINT as launched.
        wait_for(lambda: sigint_ignored(first.pid) == ignore_int, first, 10, "the launch", log)
        wait_for_a_report(first, storage, "guard", log, timeout=180)
        state = json.loads((storage / "guard" / "tuner_search.json").read_text())
        # A second search, and a resume, of the running experiment, side by side.
        for extra in [] if sig == signal.SIGHUP else [[], ["--resume"]]:
            capsys.readouterr()
            assert main([*args, *extra]) == 2
            err = capsys.readouterr().err
            assert "Traceback" not in err, err
            assert (
                f"experiment 'guard' in {storage}/guard is in use by search {state['search_id']} "
                f"(pid {first.pid} on "
            ) in err
        assert first.poll() is None  # still running: the refusals came while it held the lock
        # The first search's directory was neither moved nor rewritten.
        assert json.loads((storage / "guard" / "tuner_search.json").read_text()) == state
        assert [p.name for p in storage.iterdir() if not p.name.startswith(".")] == ["guard"]

        first.send_signal(sig)
        # as after Ctrl-C: Tune stops the trials and saves its state
        assert first.wait(timeout=120) == 0
    finally:
        end_session(first.pid, grace=0.0)
    assert "search interrupted" in log.read_text() and "--resume" in log.read_text(), (
        log.read_text()[-3000:]
    )
    assert session_pids(first.pid) == []  # Ray and its workers went with the driver
    assert gone(lambda: watchdogs(first.pid), 15) is not None  # and its watchdog
    # Sent while the first trial (paced: 24 s or more) was running: it alone has a run, KILLED.
    assert run_statuses(db) == {"search": ["KILLED"], "trial": ["KILLED"]}


@pytest.mark.slow
def test_a_storage_error_after_the_search_started_leaves_no_run_running(tmp_path: Path) -> None:
    """The earlier search's directory cannot be moved aside (its new name is taken): exit 2, and
    MLflow holds no RUNNING run (the storage is prepared before the parent run exists)."""
    (tmp_path / "guard.yaml").write_text(SPACE)
    db, storage = tmp_path / "mlflow.db", tmp_path / "ray"
    (storage / "guard" / "old_trial").mkdir(parents=True)
    os.utime(storage / "guard", (1_700_000_000, 1_700_000_000))
    taken = storage / f"guard-{time.strftime('%Y%m%d-%H%M%S', time.localtime(1_700_000_000))}"
    (taken / "something").mkdir(parents=True)  # a rename onto a non-empty directory fails
    done = subprocess.run(
        tuner_command(search_args(tmp_path / "guard.yaml", tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
        env=driver_env(),
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert (
        f"tuner search: error: {storage}/guard holds an earlier search and cannot be moved aside"
        in done.stderr
    )
    assert "RUNNING" not in sum(run_statuses(db).values(), [])
    assert (storage / "guard" / "old_trial").is_dir()  # nothing lost
