"""End to end: real local Ray (2 CPUs), real SQLite MLflow, tiny trials on digits.

Checked through MlflowClient: one parent run per search, one nested run per trial with
its params, metric history, status and artifacts; ASHA-stopped trials KILLED, diverging
ones FAILED while the search finishes; a driver SIGKILLed alone leaves no Ray behind and is
resumed with no duplicate run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

import pytest

import tuner
from tests.drivers import gone, search_args, start_driver, wait_for, watchdogs
from tests.spaces import write_space
from tests.stores import empty_store
from tuner.errors import TunerError
from tuner.runner.search import run_search
from tuner.space.load import load_spec
from tuner.system.processes import end_session, session_pids
from tuner.system.tune_storage import PLOTS_DIR

TINY = "{hidden_dims: [32], batch_size: 40, knn_k: 3"


# ------------------------------------------------------------------ helpers


def client_for(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_of(uri: str, experiment: str) -> tuple[object, list]:
    client = client_for(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("tuner.role") == "search"]
    assert len(parents) == 1, [r.data.tags for r in runs]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(trials) == len(runs) - 1  # nothing outside the search tree
    return parents[0], trials


def steps(uri: str, run, key: str) -> list[int]:
    return [m.step for m in client_for(uri).get_metric_history(run.info.run_id, key)]


def artifacts(uri: str, run) -> set[str]:
    return {a.path for a in client_for(uri).list_artifacts(run.info.run_id)}


# ------------------------------------------------------------------ searches


@pytest.mark.slow
def test_grid_search_with_asha_and_a_diverging_trial(local_ray, tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    space = write_space(
        tmp_path / "e2e.yaml",
        f"""
        name: e2e-grid
        search: grid
        max_concurrent: 1            # sequential: the worse trial meets ASHA's rung second
        scheduler: {{type: asha, grace_period: 20, reduction_factor: 3}}
        fixed: {TINY}, iterations: 60, eval_every: 20}}
        params:
          latent_dim: {{grid: [8, 1]}}          # 1-D embeddings classify far worse
          lr: {{grid: [0.001, 1000000.0]}}      # lr 1e6 turns the loss into nan at once
        """,
    )
    spec = load_spec(space)
    uri = empty_store(tmp_path)
    result = run_search(spec, tracking_uri=uri, storage_path=tmp_path / "ray", verbose=False)
    table = result.trials

    by_config = {(int(r.latent_dim), float(r.lr)): r for r in table.itertuples()}
    assert {k: r.status for k, r in by_config.items()} == {
        (8, 0.001): "FINISHED",
        (1, 0.001): "KILLED",
        (8, 1e6): "FAILED",
        (1, 1e6): "FAILED",
    }
    assert table.iloc[0]["status"] == "FINISHED"  # best first

    parent, trials = runs_of(uri, "e2e-grid")
    assert parent.info.status == "FINISHED"
    assert {"search.yaml", "spec.json", "summary.csv"} <= artifacts(uri, parent)
    base = parent.data.metrics
    assert 0.5 < base["baseline_input_knn_accuracy"] <= 1.0
    assert {"baseline_pca1_knn_accuracy", "baseline_pca8_recon_error"} <= set(base)
    assert base["baseline_pca8_knn_accuracy"] > base["baseline_pca1_knn_accuracy"]
    assert base["best_knn_accuracy"] == pytest.approx(by_config[(8, 0.001)].knn_accuracy)

    runs = {r.data.tags["tuner.trial_id"]: r for r in trials}
    assert set(runs) == set(table["trial_id"])
    for key, row in by_config.items():
        run = runs[row.trial_id]
        assert run.info.status == row.status
        assert (int(run.data.params["latent_dim"]), float(run.data.params["lr"])) == key
        assert run.data.params["iterations"] == "60" and run.data.params["hidden_dims"] == "[32]"

    finished = runs[by_config[(8, 0.001)].trial_id]
    assert steps(uri, finished, "knn_accuracy") == [20, 40, 60]
    assert {"embedding.png", "loss_curves.png", "reconstructions.png"} <= artifacts(uri, finished)
    # The trial trained exactly the config it logged: a direct fit gives the same accuracy.
    from tuner.data import load_features
    from tuner.trainer.train import fit

    cfg = spec.trial_config({"latent_dim": 8, "lr": 0.001})
    data = load_features(cfg, progress=False)
    direct = fit(cfg, data.without_test())
    assert finished.data.metrics["knn_accuracy"] == pytest.approx(
        direct.metrics["knn_accuracy"], abs=1e-9
    )
    # The test split is read once, for the selected (best) trial only, from its final checkpoint.
    from tuner.trainer.evaluation import evaluate_split

    tested = {
        r.data.tags["tuner.trial_id"] for r in trials if "test_knn_accuracy" in r.data.metrics
    }
    assert tested == {finished.data.tags["tuner.trial_id"]}
    expected = evaluate_split(cfg, direct.model, data, "test")
    assert finished.data.metrics["test_knn_accuracy"] == pytest.approx(
        expected["test_knn_accuracy"], abs=1e-9
    )
    assert base["test_knn_accuracy"] == finished.data.metrics["test_knn_accuracy"]
    assert table.iloc[0]["test_knn_accuracy"] == pytest.approx(
        expected["test_knn_accuracy"], abs=1e-9
    )
    assert table["test_knn_accuracy"].iloc[1:].isna().all()
    assert {"test_baseline_input_knn_accuracy", "test_baseline_pca8_recon_error"} <= set(base)

    # The result names the one finished trial as the search's choice, with its run and model.
    best = result.best_trial
    assert result.status == "FINISHED" and result.experiment == "e2e-grid"
    assert best.trial_id == by_config[(8, 0.001)].trial_id and best.status == "FINISHED"
    assert [t.trial_id for t in result.best_trials] == [best.trial_id]  # one metric: one trial
    assert best.config == cfg and best.params == {"latent_dim": 8, "lr": 0.001}
    assert best.metrics["knn_accuracy"] == finished.data.metrics["knn_accuracy"]
    assert best.metrics["test_knn_accuracy"] == finished.data.metrics["test_knn_accuracy"]
    assert best.run_id == finished.info.run_id and result.get_best_result() is best
    assert result.run_ids == {t: r.info.run_id for t, r in runs.items()}
    assert result.parent_run_id == parent.info.run_id
    assert result.search_id == parent.data.tags["tuner.search_id"]
    assert result.model_uri == "models:/e2e-grid/1" and result.model_version == 1
    assert parent.data.tags["tuner.registered_model"] == result.model_uri

    killed = runs[by_config[(1, 0.001)].trial_id]
    assert steps(uri, killed, "knn_accuracy") == [20]
    # Tune's result files stay (tuner sync reads result.json); TensorBoard's event files are not
    # written.
    trial_dirs = list((tmp_path / "ray" / "e2e-grid").glob("run_trial_*"))
    assert len(trial_dirs) == 4 and all((d / "result.json").is_file() for d in trial_dirs)
    assert not list((tmp_path / "ray").rglob("events.out.tfevents*"))
    for key in [(8, 1e6), (1, 1e6)]:
        failed = runs[by_config[key].trial_id]
        assert "error.txt" in artifacts(uri, failed)
        text = client_for(uri).download_artifacts(failed.info.run_id, "error.txt", str(tmp_path))
        assert Path(text).read_text().startswith("tuner.errors.TrainingDiverged: the loss became ")


@pytest.mark.slow
def test_multi_objective_optuna_returns_the_pareto_front(local_ray, tmp_path: Path) -> None:
    space = write_space(
        tmp_path / "pareto.yaml",
        f"""
        name: e2e-pareto
        metric: [knn_accuracy, recon_error]
        mode: [max, min]
        search: optuna
        samples: 9
        seed: 3
        fixed: {TINY}, iterations: 500, eval_every: 20}}
        params:
          mu: {{uniform: [0.0, 1.0]}}
          latent_dim: {{randint: [1, 6]}}
        """,
    )
    uri = empty_store(tmp_path)
    # The Python API: a path, trial settings as overrides (like --set), run_search's keywords.
    # One trial at a time (--max-concurrent): one trial worker, its imports paid once.
    result = tuner.search(
        space,
        overrides={"iterations": 20},
        samples=4,
        max_concurrent=1,
        tracking_uri=uri,
        storage_path=tmp_path / "ray",
        verbose=False,
    )
    table = result.trials
    assert len(table) == 4 and (table["status"] == "FINISHED").all()
    assert (table["iteration"] == 20).all()
    assert table["latent_dim"].between(1, 6).all() and table["mu"].between(0, 1).all()
    assert len(set(zip(table["mu"], table["latent_dim"]))) == 4  # Optuna proposed four configs
    # Recompute the front by hand: a row is on it iff no other row is at least as good in
    # both metrics and strictly better in one.
    acc, err = table["knn_accuracy"].to_numpy(), table["recon_error"].to_numpy()
    expected = [
        not any(
            (acc[j] >= acc[i]) and (err[j] <= err[i]) and ((acc[j] > acc[i]) or (err[j] < err[i]))
            for j in range(len(table))
        )
        for i in range(len(table))
    ]
    assert table["pareto"].tolist() == expected
    assert table["pareto"].iloc[0] and table["pareto"].is_monotonic_decreasing  # front first
    parent, trials = runs_of(uri, "e2e-pareto")
    assert len(trials) == 4 and parent.data.tags["tuner.metric"] == "knn_accuracy,recon_error"
    assert parent.data.params["max_concurrent"] == "1"  # the keyword, as --max-concurrent
    # Every trial on the front, and only those, was read on the test split.
    front = set(table[table["pareto"]]["trial_id"])
    assert {
        r.data.tags["tuner.trial_id"] for r in trials if "test_recon_error" in r.data.metrics
    } == front
    assert table[table["pareto"]]["test_knn_accuracy"].notna().all()

    # The result: the front as Optuna's best_trials, in the table's order; the chosen trial the
    # front's best knn_accuracy (the first metric), its model the registered version.
    runs = {r.data.tags["tuner.trial_id"]: r for r in trials}
    assert all(r.data.params["iterations"] == "20" for r in trials)  # the file says 500
    on_front = table[table["pareto"]]
    assert [t.trial_id for t in result.best_trials] == list(on_front["trial_id"])
    assert all(
        t.config.iterations == 20 and t.run_id == runs[t.trial_id].info.run_id
        for t in result.best_trials
    )
    row = on_front.loc[on_front["knn_accuracy"].idxmax()]
    best = result.get_best_result()
    assert best is result.best_trial and best.trial_id == row["trial_id"]
    assert best.params == {"mu": row["mu"], "latent_dim": row["latent_dim"]}
    assert (best.config.mu, best.config.latent_dim) == (row["mu"], row["latent_dim"])
    assert best.metrics["test_knn_accuracy"] == row["test_knn_accuracy"]
    assert best.metrics["recon_error"] == runs[best.trial_id].data.metrics["recon_error"]
    lowest = table.loc[table["recon_error"].idxmin(), "trial_id"]
    assert result.get_best_result("recon_error").trial_id == lowest
    assert result.parent_run_id == parent.info.run_id and result.experiment == "e2e-pareto"
    assert result.model_uri == parent.data.tags["tuner.registered_model"]
    assert result.model_uri == f"models:/e2e-pareto/{result.model_version}"
    version = client_for(uri).get_model_version("e2e-pareto", str(result.model_version))
    assert version.run_id == best.run_id
    assert result.experiment_path.endswith(str(tmp_path / "ray" / "e2e-pareto"))


# ------------------------------------------------------------------ kill and resume


def _kill_session(sid: int) -> None:
    """The killed driver's Ray (raylet, GCS, agents, workers) shares its session: end exactly
    those."""
    end_session(sid, grace=0.0)  # no grace: a crash, not a shutdown


def _resumable_checkpoint(exp_dir: Path, before: set[Path]):
    """A readiness test: an unfinished trial wrote two checkpoints since `before` (so Tune has
    registered the first), and Tune's saved experiment state is newer than that."""
    seen: dict[str, set[str]] = {}
    registered_at: list[float] = []

    def ready() -> bool:
        if not registered_at:
            # A finished trial's last checkpoint holds its plots and stays; its earlier ones go once
            # Tune's saved state records the end (runner/callback.py).
            finished = {
                p.parent.parent.name for p in exp_dir.glob(f"run_trial_*/checkpoint_*/{PLOTS_DIR}")
            }
            for ckpt in set(exp_dir.glob("run_trial_*/checkpoint_*")) - before:
                if ckpt.parent.name not in finished:
                    seen.setdefault(ckpt.parent.name, set()).add(ckpt.name)
            if any(len(names) >= 2 for names in seen.values()):
                registered_at.append(time.time())
            return False
        states = [p.stat().st_mtime for p in exp_dir.glob("experiment_state-*.json")]
        return bool(states) and max(states) > registered_at[0]

    return ready


def _finished_trials(uri: str) -> int:
    """Read-only SQL: an MlflowClient here could race the driver still creating the tables."""
    db = Path(uri[len("sqlite:///") :])
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return con.execute(
                "SELECT count(*) FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
                "WHERE tags.key = 'tuner.role' AND tags.value = 'trial' "
                "AND runs.status = 'FINISHED'"
            ).fetchone()[0]
    except sqlite3.OperationalError:  # no file or no tables yet
        return 0


def _statuses(uri: str, experiment: str) -> tuple[str, list[str]]:
    parent, trials = runs_of(uri, experiment)
    return parent.info.status, sorted(r.info.status for r in trials)


@pytest.mark.slow
def test_interrupt_kill_and_resume(
    local_ray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C ends a search cleanly; a resumed driver SIGKILLed alone mid-trial (an OOM kill)
    leaves no Ray process behind and resumes again; in the end every trial has exactly one run and
    one unbroken metric history."""
    from tuner.cli import main

    # Paced trials (TUNER_TEST_HOLD=trials: a second per report, tests/e2e/test_stops.py's PACED):
    # 10 reports make a trial last 10 s or more on any machine, so the SIGKILL of step 2 meets one
    # still running after Tune has saved its state (every 3 s), without minutes of training. The
    # resume of step 3 runs in this process, unpaced. One trial at a time: a driver then starts
    # one trial worker (~5 core-s of imports), not two, and each step still meets a running trial.
    space = write_space(
        tmp_path / "resume.yaml",
        f"""
        name: e2e-resume
        search: grid
        max_concurrent: 1
        fixed: {TINY}, iterations: 150, eval_every: 15}}
        params:
          mu: {{grid: [0.25, 0.75]}}
          latent_dim: {{grid: [2, 4]}}
        """,
    )
    uri = empty_store(tmp_path)
    args = search_args(space, tmp_path)
    exp_dir, log = tmp_path / "ray" / "e2e-resume", tmp_path / "driver.log"

    proc = start_driver(args, log, hold="trials")  # 1: Ctrl-C once a trial has finished
    try:
        wait_for(lambda: _finished_trials(uri) > 0, proc, 240, "a trial finished", log)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        _kill_session(proc.pid)
    parent, statuses = _statuses(uri, "e2e-resume")
    assert parent == "KILLED" and "FINISHED" in statuses and "RUNNING" not in statuses
    assert "search interrupted" in log.read_text() and "--resume" in log.read_text()

    # 2: SIGKILL the resumed driver alone, mid-trial: its local Ray's processes, agents included,
    # and its watchdog end within 30 s (the watchdog's job: nothing closes them otherwise). The
    # trial killed then leaves nothing in the machine's temporary folder (a private one here; Ray's
    # own folder stays the usual one, for its sockets' short paths).
    ready = _resumable_checkpoint(exp_dir, set(exp_dir.glob("run_trial_*/checkpoint_*")))
    machine_tmp = tmp_path / "machine-tmp"
    machine_tmp.mkdir()
    proc = start_driver(
        [*args, "--resume"],
        log,
        hold="trials",
        env={"TMPDIR": str(machine_tmp), "RAY_TMPDIR": tempfile.gettempdir()},
    )
    try:
        wait_for(ready, proc, 120, "a checkpoint in Tune's saved state", log)
        ray_pids = [p for p in session_pids(proc.pid) if p != proc.pid]
        names = [
            Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].rsplit(b"/", 1)[-1]
            for p in ray_pids
        ]
        assert b"raylet" in names and b"ray::DashboardAgent" in names, names
        assert watchdogs(proc.pid)
        proc.kill()
        proc.wait()
        after = gone(lambda: session_pids(proc.pid), 30)
        assert after is not None, (
            f"still running 30 s after the SIGKILL: {session_pids(proc.pid)} of {ray_pids}"
        )
        assert gone(lambda: watchdogs(proc.pid), 10) is not None
        assert not list(machine_tmp.rglob("train_state.pt"))  # staged in the trial's own folder
        with capsys.disabled():  # shown under -s: how soon
            print(
                f"\n{len(ray_pids)} Ray processes ({b', '.join(sorted(set(names))).decode()}) all "
                f"gone {after:.1f} s after the SIGKILL"
            )
    finally:
        _kill_session(proc.pid)
    parent, statuses = _statuses(uri, "e2e-resume")
    assert parent == "RUNNING" and "RUNNING" in statuses  # nobody closed them: --resume does

    assert main([*args, "--resume"]) == 0  # 3: resume in this process, to the end
    parent_run, trials = runs_of(uri, "e2e-resume")
    assert parent_run.info.status == "FINISHED"
    ids = [r.data.tags["tuner.trial_id"] for r in trials]
    assert len(ids) == 4 == len(set(ids))  # every trial, each with one run
    assert {r.info.status for r in trials} == {"FINISHED"}
    for run in trials:  # histories without gaps or repeated steps
        assert steps(uri, run, "knn_accuracy") == list(range(15, 151, 15))
    # Some trial continued from a checkpoint rather than from the start.
    restored = [
        json.loads(line).get("restored_from_iteration", 0)
        for f in exp_dir.glob("run_trial_*/result.json")
        for line in f.read_text().splitlines()
    ]
    assert max(restored) >= 15

    capsys.readouterr()
    assert main(["report", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "e2e-resume" in out and out.count("FINISHED") >= 4
    assert all(i in out for i in ids)
    # A changed search cannot resume this one; nor can a store with nothing to resume.
    assert main([*args, "--resume", "--set", "iterations=100"]) == 2
    assert "ran with other settings (fixed differ)" in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "elsewhere"), "--resume"]) == 2
    assert "no search to resume" in capsys.readouterr().err


@pytest.mark.slow
def test_a_trial_larger_than_the_cluster_is_refused_before_any_run(
    local_ray, tmp_path: Path
) -> None:
    space = write_space(
        tmp_path / "big.yaml",
        f"""
        name: e2e-big
        resources: {{cpus: 3}}
        fixed: {TINY}, iterations: 20, eval_every: 20}}
        """,
    )
    uri = empty_store(tmp_path)
    with pytest.raises(
        TunerError, match=r"resources.cpus: each trial asks for 3 CPU, the Ray cluster has 2"
    ):
        run_search(load_spec(space), tracking_uri=uri, storage_path=tmp_path / "ray", verbose=False)
    assert client_for(uri).get_experiment_by_name("e2e-big") is None
    # Only the search's lock was taken: no experiment directory, nothing moved or written.
    assert [p.name for p in (tmp_path / "ray").iterdir()] == [".e2e-big.lock"]
