"""SearchTracker against a real SQLite MLflow store, driven by hand the way the Tune callback drives
it."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.drivers import free_port
from tests.stores import empty_store
from tuner.core.selection import search_status
from tuner.errors import TunerError
from tuner.system.secrets import mask_uri
from tuner.system.tune_storage import SPOOL_DIR, STATE_FILE, experiment_dir, open_storage
from tuner.tracking.reader import print_report, trials_table
from tuner.tracking.store import resolve_tracking_uri, unreachable
from tuner.tracking.sync import StoredTrial, read_trials, record_status, sync_search
from tuner.tracking.tags import REQUIRE as REQUIRE_TAG
from tuner.tracking.writer import SearchTracker
from tuner.trainer import plots

SPEC_YAML = "# my search\nsearch:\n  samples: 3\nspace:\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\n"
SEARCH_PARAMS = {
    "metric": "knn_accuracy",
    "mode": "max",
    "samples": 3,
    "searcher": "random",
    "metrics_seen": ["knn_accuracy", "recon_error"],
}
# trial id -> (lr, status, history of (step, knn_accuracy, recon_error, loss))
TRIALS = {
    "t0_00000": (
        1e-3,
        "FINISHED",
        [(0, 0.40, 0.50, 2.0), (10, 0.70, 0.20, 1.0), (20, 0.90, 0.10, 0.5)],
    ),
    "t0_00001": (1e-2, "FAILED", [(0, 0.30, 0.60, 3.0), (10, 0.50, 0.30, 2.5)]),
    "t0_00002": (1e-4, "KILLED", [(0, 0.60, 0.05, 1.5)]),
}


def params_of(lr: float) -> dict:
    return {
        "lr": lr,
        "encoder": "vae",
        "hidden_dims": [64, 32],
        "composite_labels": {0: 0, 1: 1},
        "label_names": None,
        "normalize": False,
    }


def artifacts(directory: Path) -> Path:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(2), 20)
    plots.plot_embedding(
        rng.normal(size=(40, 2)) + labels[:, None],
        labels,
        ["even", "odd"],
        directory / "embedding.png",
    )
    x = rng.uniform(size=(8, 64))
    plots.plot_reconstructions(x, x * 0.8, (1, 8, 8), directory / "reconstructions.png", n=8)
    plots.plot_loss_curves(
        [{"iteration": 0.0, "loss": 2.0}, {"iteration": 10.0, "loss": 1.0}],
        directory / "loss_curves.png",
    )
    return directory


def run_search(
    uri: str, tmp: Path, search_id: str = "s1", experiment: str = "exp"
) -> SearchTracker:
    tracker = SearchTracker.open(
        uri,
        experiment,
        search_id,
        SPEC_YAML,
        {"space": {"lr": [1e-4, 1e-2]}},
        SEARCH_PARAMS,
        resume=False,
    )
    tracker.log_baselines({"baseline_pca_knn_accuracy": 0.8})
    rows = []
    for trial_id, (lr, status, history) in TRIALS.items():
        tracker.trial_started(trial_id, params_of(lr))
        for step, acc, err, loss in history:
            tracker.log_metrics(
                trial_id,
                {
                    "knn_accuracy": acc,
                    "recon_error": err,
                    "loss": loss,
                    "iteration": float(step),
                    "config/lr": lr,
                },
                step,
            )
        art = artifacts(tmp / trial_id) if status == "FINISHED" else None
        error = (
            "Traceback...\nTrainingDiverged: loss is nan at iteration 12"
            if status == "FAILED"
            else None
        )
        tracker.trial_finished(trial_id, status, artifact_dir=art, error=error)
        rows.append(
            {
                "trial_id": trial_id,
                "lr": lr,
                "knn_accuracy": history[-1][1],
                "recon_error": history[-1][2],
                "loss": history[-1][3],
            }
        )
    tracker.finish(pd.DataFrame(rows), "knn_accuracy", "max")
    return tracker


@pytest.fixture(scope="module")
def searched_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SearchTracker, Path]:
    tmp = tmp_path_factory.mktemp("store")
    return tmp / "mlflow.db", run_search(empty_store(tmp), tmp), tmp


@pytest.fixture
def store(searched_store, tmp_path: Path) -> tuple[str, SearchTracker, Path]:
    """The search's store as `run_search` left it, fresh for each test: a test that sets a tag (the
    require bounds, say) cannot change what the next one reads, whatever order they run in. The
    search is logged once; each test gets its own copy of the database, whose runs keep their
    artifacts (read only here) under the module's folder."""
    db, tracker, tmp = searched_store
    copy = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    return f"sqlite:///{copy}", tracker, tmp


def nested_runs(client: MlflowClient, tracker: SearchTracker) -> dict[str, object]:
    runs = client.search_runs(
        [tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{tracker.parent_run_id}'"
    )
    return {r.data.tags["tuner.trial_id"]: r for r in runs}


def artifact_names(client: MlflowClient, run_id: str) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id)}


def test_parent_run(store) -> None:
    uri, tracker, tmp = store
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(tracker.parent_run_id)
    assert (
        parent.data.tags["tuner.role"] == "search" and parent.data.tags["tuner.search_id"] == "s1"
    )
    assert (
        parent.data.tags["tuner.metric"] == "knn_accuracy"
        and parent.data.tags["tuner.mode"] == "max"
    )
    assert parent.data.tags["tuner.best_trial_id"] == "t0_00000"
    assert parent.data.params["samples"] == "3" and parent.data.params["searcher"] == "random"
    assert parent.data.params["metrics_seen"] == '["knn_accuracy", "recon_error"]'
    assert parent.info.status == "FINISHED"
    # Three trials are too few for importances: no importance.png, and no importance_* metric below.
    assert artifact_names(client, parent.info.run_id) == {
        "search.yaml",
        "spec.json",
        "summary.csv",
        "pareto.png",
        "report.html",
    }
    yaml_text = Path(
        client.download_artifacts(parent.info.run_id, "search.yaml", str(tmp / "dl"))
    ).read_text()
    assert yaml_text == SPEC_YAML
    summary = pd.read_csv(
        client.download_artifacts(parent.info.run_id, "summary.csv", str(tmp / "dl"))
    )
    assert list(summary["trial_id"]) == list(TRIALS)
    # Best by knn_accuracy (max) is t0_00000: its final metrics, plus the baseline as given.
    assert parent.data.metrics == {
        "best_knn_accuracy": 0.9,
        "best_recon_error": 0.1,
        "best_loss": 0.5,
        "baseline_pca_knn_accuracy": 0.8,
    }
    # Artifacts beside the database, not under whatever the working directory was.
    assert parent.info.artifact_uri.removeprefix("file://").startswith(str(tmp / "mlartifacts"))


def test_nested_runs(store) -> None:
    uri, tracker, tmp = store
    client = MlflowClient(tracking_uri=uri)
    runs = nested_runs(client, tracker)
    assert set(runs) == set(TRIALS)
    for trial_id, (lr, status, history) in TRIALS.items():
        run = runs[trial_id]
        assert run.info.run_name == trial_id and run.info.status == status
        assert run.data.tags["mlflow.parentRunId"] == tracker.parent_run_id
        assert float(run.data.params["lr"]) == lr
        assert run.data.params["hidden_dims"] == "[64, 32]"
        assert run.data.params["composite_labels"] == '{"0": 0, "1": 1}'
        assert run.data.params["label_names"] == "None" and run.data.params["normalize"] == "False"
        for index, key in ((1, "knn_accuracy"), (2, "recon_error"), (3, "loss")):
            points = sorted(
                (m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)
            )
            assert points == [(h[0], h[index]) for h in history]
        # Only the trial metrics: Tune's bookkeeping (iteration, config/...) is not a metric.
        assert set(run.data.metrics) == {"knn_accuracy", "recon_error", "loss"}
    assert artifact_names(client, runs["t0_00000"].info.run_id) == {
        "embedding.png",
        "reconstructions.png",
        "loss_curves.png",
        "images",
    }
    # The embedding again as an image at the trial's last step, for MLflow's image chart.
    last = max(step for step, *_ in TRIALS["t0_00000"][2])
    assert {
        a.path.split("+timestamp")[0]
        for a in client.list_artifacts(runs["t0_00000"].info.run_id, "images")
    } == {f"images/embedding+step+{last}"}
    assert artifact_names(client, runs["t0_00001"].info.run_id) == {"error.txt"}
    error = Path(
        client.download_artifacts(runs["t0_00001"].info.run_id, "error.txt", str(tmp / "dl2"))
    )
    assert "loss is nan at iteration 12" in error.read_text()
    assert artifact_names(client, runs["t0_00002"].info.run_id) == set()


def test_trials_table_sorted_by_search_metric(store) -> None:
    uri, tracker, _ = store
    table = trials_table(uri)
    assert list(table["trial_id"]) == ["t0_00000", "t0_00002", "t0_00001"]  # knn 0.9, 0.6, 0.5
    assert list(table["status"]) == ["FINISHED", "KILLED", "FAILED"]
    assert list(table["knn_accuracy"]) == [0.9, 0.6, 0.5] and list(table["recon_error"]) == [
        0.1,
        0.05,
        0.3,
    ]
    assert list(table["lr"]) == [1e-3, 1e-4, 1e-2]
    assert list(table.columns[:3]) == ["trial_id", "status", "lr"]  # the searched param comes first
    assert table.attrs["searched"] == ["lr"] and table.attrs["search_id"] == "s1"
    runs = nested_runs(MlflowClient(tracking_uri=uri), tracker)
    assert set(table["run_id"]) == {r.info.run_id for r in runs.values()}
    assert trials_table(uri, "exp")["trial_id"].tolist() == table["trial_id"].tolist()


def test_print_report(store, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    uri, _, _ = store
    csv_path = tmp_path / "out" / "report.csv"
    print_report(uri, "exp", csv_path)
    out = capsys.readouterr().out
    table_part, front_part = out.split("Pareto front")
    order = [table_part.index(t) for t in ("t0_00000", "t0_00002", "t0_00001")]
    assert order == sorted(order)
    # Front of (recon_error lower, knn_accuracy higher) of the finished trials: t0_00000 (0.1, 0.9).
    # t0_00002 (0.05, 0.6) would join it, but it was stopped: its figures are not its final state.
    assert "1 trials" in front_part and "t0_00000" in front_part
    assert "t0_00001" not in front_part and "t0_00002" not in front_part
    written = pd.read_csv(csv_path)
    assert list(written["trial_id"]) == ["t0_00000", "t0_00002", "t0_00001"]
    assert list(written["knn_accuracy"]) == [0.9, 0.6, 0.5]
    assert "chosen" not in out  # no require bounds: no chosen line


def test_print_report_names_the_trial_chosen_within_require(
    store, capsys: pytest.CaptureFixture
) -> None:
    uri, tracker, _ = store
    client = MlflowClient(tracking_uri=uri)
    client.set_tag(tracker.parent_run_id, REQUIRE_TAG, "recon_error<=0.2")
    print_report(uri, "exp", None)
    chosen = capsys.readouterr().out.split("chosen: ")[1]
    assert chosen.startswith(
        "the best knn_accuracy within require (recon_error<=0.2) on validation"
    )
    assert "t0_00000" in chosen and "t0_00002" not in chosen
    # Only t0_00002 (recon 0.05) meets 0.06, and it was stopped: what the search chose (none, as
    # its final test and registry read), not a stopped trial's figures.
    client.set_tag(tracker.parent_run_id, REQUIRE_TAG, "recon_error<=0.06")
    print_report(uri, "exp", None)
    assert (
        "chosen: the best knn_accuracy within require (recon_error<=0.06) on validation: none"
        in capsys.readouterr().out
    )


def test_resume_reuses_runs_without_duplicate_points(tmp_path: Path) -> None:
    uri = empty_store(tmp_path)
    first = run_search(uri, tmp_path)
    client = MlflowClient(tracking_uri=uri)
    before = {t: r.info.run_id for t, r in nested_runs(client, first).items()}

    again = SearchTracker.open(uri, "exp", "s1", SPEC_YAML, {}, SEARCH_PARAMS, resume=True)
    assert again.parent_run_id == first.parent_run_id
    assert client.get_run(again.parent_run_id).info.status == "RUNNING"
    assert again.trial_started("t0_00002", params_of(1e-4)) == before["t0_00002"]
    # Tune replays the steps since the last checkpoint (0 again), then goes on (10).
    again.log_metrics("t0_00002", {"knn_accuracy": 0.61, "recon_error": 0.06}, 0)
    again.log_metrics("t0_00002", {"knn_accuracy": 0.80, "recon_error": 0.04}, 10)
    again.trial_finished("t0_00002", "FINISHED")
    # A trial the resumed driver only hears results from still lands on its old run.
    again.log_metrics("t0_00001", {"knn_accuracy": 0.99}, 10)
    again.finish(trials_table(uri), "knn_accuracy", "max")

    after = nested_runs(client, again)
    assert {t: r.info.run_id for t, r in after.items()} == before  # run count == trial count
    history = sorted(
        (m.step, m.value) for m in client.get_metric_history(before["t0_00002"], "knn_accuracy")
    )
    assert history == [(0, 0.60), (10, 0.80)]
    assert after["t0_00002"].info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(before["t0_00001"], "knn_accuracy")] == [
        0.30,
        0.50,
    ]
    # a metric written to an ended run does not reopen it
    assert after["t0_00001"].info.status == "FAILED"
    parents = client.search_runs([again.experiment_id], "tags.`tuner.role` = 'search'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


def test_new_search_reuses_experiment_and_report_shows_latest(tmp_path: Path) -> None:
    uri = empty_store(tmp_path)
    first = run_search(uri, tmp_path, "s1")
    spec_file = tmp_path / "grid.yaml"  # a path to the file is accepted as well as its text
    spec_file.write_text("search: {samples: 1}\n")
    second = SearchTracker.open(
        uri, "exp", "s2", str(spec_file), {}, {"metric": "recon_error", "mode": "min"}, resume=False
    )
    assert (
        second.experiment_id == first.experiment_id and second.parent_run_id != first.parent_run_id
    )
    logged = MlflowClient(tracking_uri=uri).download_artifacts(
        second.parent_run_id, "search.yaml", str(tmp_path)
    )
    assert Path(logged).read_text() == "search: {samples: 1}\n"
    for trial_id, err in (("a", 0.3), ("b", 0.1), ("c", 0.2)):
        second.trial_started(trial_id, {"lr": err})
        second.log_metrics(trial_id, {"recon_error": err, "knn_accuracy": 0.5}, 5)
        second.trial_finished(trial_id, "FINISHED")
    table = trials_table(uri)
    assert table.attrs["search_id"] == "s2" and list(table["trial_id"]) == [
        "b",
        "c",
        "a",
    ]  # min recon_error
    with pytest.raises(TunerError, match="'nope'.*exp"):
        trials_table(uri, "nope")
    client = MlflowClient(tracking_uri=uri)
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(TunerError, match="'gone' is deleted"):
        SearchTracker.open(uri, "gone", "s3", SPEC_YAML, {}, {}, resume=False)


def test_no_searches_and_missing_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/empty.db"
    MlflowClient(tracking_uri=uri).create_experiment("other")
    with pytest.raises(TunerError, match="no tuner search found"):
        trials_table(uri)
    with pytest.raises(TunerError, match="no MLflow store"):
        trials_table(f"sqlite:///{tmp_path}/absent.db")


def test_interrupted_search_with_empty_table(tmp_path: Path) -> None:
    # A search that fails before any trial still ends its parent run, with the status given.
    uri = empty_store(tmp_path)
    tracker = SearchTracker.open(uri, "exp", "s", SPEC_YAML, {}, {}, resume=False)
    tracker.finish(pd.DataFrame(), ["knn_accuracy", "recon_error"], ["max", "min"], "FAILED")
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(tracker.parent_run_id)
    assert parent.info.status == "FAILED" and parent.data.metrics == {}
    assert parent.data.tags["tuner.metric"] == "knn_accuracy,recon_error"
    assert parent.data.tags["tuner.mode"] == "max,min"
    assert artifact_names(client, tracker.parent_run_id) == {
        "search.yaml",
        "spec.json",
        "summary.csv",
    }


def test_unreachable_server_is_a_fast_user_error() -> None:
    port = free_port()
    start = time.monotonic()
    with pytest.raises(TunerError) as err:
        SearchTracker.open(
            f"http://alice:s3cret@127.0.0.1:{port}", "exp", "s", SPEC_YAML, {}, {}, resume=False
        )
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and "***@" in message
    assert "s3cret" not in message and "alice" not in message
    with pytest.raises(TunerError, match="cannot be used"):
        trials_table(f"https://bob:pw@127.0.0.1:{port}")


@pytest.mark.parametrize("uri", ["foo://bar", "/definitely/a/file/store/mlruns"])
def test_bad_uri_is_a_user_error(uri: str) -> None:
    with pytest.raises(TunerError, match="cannot be used"):
        SearchTracker.open(uri, "exp", "s", SPEC_YAML, {}, {}, resume=False)


def test_resolve_and_mask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri("sqlite:///sub/x.db") == f"sqlite:///{tmp_path.resolve()}/sub/x.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://host:5000")
    assert resolve_tracking_uri(None) == "http://host:5000"
    assert resolve_tracking_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert (
        mask_uri("see https://u:p@h:1/x and http://h:2") == "see https://***@h:1/x and http://h:2"
    )


# ------------------------------------------------------------------ the store goes away; tuner sync


SYNC_SPEC = {
    "name": "exp",
    "metric": ["knn_accuracy"],
    "mode": ["max"],
    "search": "grid",
    "samples": 1,
    "scheduler": None,
    "n_trials": 4,
    "fixed": {"iterations": 20, "eval_every": 10},
    "params": {"lr": "grid [0.001, 1000000.0, 0.01, 0.1]"},
}
DIVERGED = (
    "Traceback (most recent call last):\n  File ...\n"
    "tuner.errors.TrainingDiverged: the loss became nan\n"
)


def tune_dir(root: Path) -> Path:
    """What Tune leaves in storage (layout as Ray 2.60 writes it): 4 trials of a search."""
    exp = root / "exp"
    exp.mkdir(parents=True)
    (exp / STATE_FILE).write_text(json.dumps({"search_id": "s9", "spec": SYNC_SPEC}))
    # never ran: no run
    for n, lr, steps, error in (
        (0, 0.001, [(10, 0.5), (20, 0.8)], None),  # FINISHED
        (1, 1e6, [(10, 0.1)], DIVERGED),  # FAILED
        (2, 0.01, [(10, 0.6)], None),  # KILLED (stopped early)
        (3, 0.1, [], None),
    ):
        trial = exp / f"run_trial_abcde_0000{n}_{n}_lr={lr}_2026-01-01_00-00-00"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps({"lr": lr}))
        lines = [
            json.dumps(
                {
                    "iteration": float(step),
                    "knn_accuracy": acc,
                    "recon_error": round(1 - acc, 6),
                    "training_iteration": i + 1,
                    "trial_id": f"abcde_0000{n}",
                    "config": {"lr": lr},
                }
            )
            for i, (step, acc) in enumerate(steps)
        ]
        (trial / "result.json").write_text("".join(line + "\n" for line in lines))
        if error:
            (trial / "error.txt").write_text(error)
    return exp


def snapshot(uri: str) -> dict:
    """Everything sync could change: runs, statuses, end times, params, histories, artifacts."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("exp")
    out = {}
    for run in client.search_runs([exp.experiment_id]):
        histories = {
            k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
            for k in run.data.metrics
        }
        # Keyed by trial id: trial runs are named by their values (e.g. "pairwise ae lr=0.01").
        out[run.data.tags.get("tuner.trial_id", run.info.run_name)] = (
            run.info.run_id,
            run.info.status,
            run.info.end_time,
            run.data.params,
            histories,
            artifact_names(client, run.info.run_id),
        )
    return out


def test_tracker_goes_offline_keeps_plots_and_sync_fills_the_gaps(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a closed port, refused at once
    exp_dir, uri = tune_dir(tmp_path / "ray"), empty_store(tmp_path)
    tracker = SearchTracker.open(
        uri,
        "exp",
        "s9",
        SPEC_YAML,
        SYNC_SPEC,
        {"metric": ["knn_accuracy"], "mode": ["max"]},
        resume=False,
        storage=open_storage(str(exp_dir)),
    )
    tracker.trial_started("abcde_00000", {"lr": 0.001})
    tracker.log_metrics("abcde_00000", {"knn_accuracy": 0.5, "recon_error": 0.5}, 10)
    first_run = tracker.trial_started("abcde_00000", {})

    # The store stops answering: every later call meets a closed port (credentials in its URI).
    dead = f"http://alice:s3cret@127.0.0.1:{free_port()}"
    tracker.parent.client = tracker.trials.client = MlflowClient(tracking_uri=dead)
    tracker.spool.tracking_uri = dead
    start = time.monotonic()
    assert tracker.log_metrics("abcde_00000", {"knn_accuracy": 0.8, "recon_error": 0.2}, 20) == 0
    assert tracker.offline and tracker.trial_started("abcde_00001", {"lr": 1e6}) is None
    tracker.trial_finished("abcde_00000", "FINISHED", artifact_dir=artifacts(tmp_path / "plots"))
    tracker.finish(
        pd.DataFrame([{"trial_id": "abcde_00000", "knn_accuracy": 0.8}]), "knn_accuracy", "max"
    )
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert err.count("stopped answering") == 1 and "missed part of this search" in err
    assert (
        "MLflow at http://***@127.0.0.1" in err
        and f'tuner sync --storage-path {exp_dir} --experiment "exp" --tracking-uri {uri}' in err
    )
    assert "s3cret" not in err and "alice" not in err
    # What only the driver knew is kept beside Tune's results: the plots, the search's status.
    assert {p.name for p in (exp_dir / SPOOL_DIR / "abcde_00000").iterdir()} == {
        "embedding.png",
        "reconstructions.png",
        "loss_curves.png",
    }
    assert json.loads((exp_dir / SPOOL_DIR / "search.json").read_text()) == {"status": "FINISHED"}

    before = snapshot(uri)
    assert before["s9"][1] == "RUNNING" and before["abcde_00000"][4]["knn_accuracy"] == [(10, 0.5)]
    written = sync_search(tmp_path / "ray", "exp", uri, verbose=False)
    after = snapshot(uri)
    assert set(after) == {"s9", "abcde_00000", "abcde_00001", "abcde_00002"}  # 00003 never ran
    assert after["abcde_00000"][0] == first_run  # the same run, completed
    assert {t: after[t][1] for t in after} == {
        "s9": "FINISHED",
        "abcde_00000": "FINISHED",
        "abcde_00001": "FAILED",
        "abcde_00002": "KILLED",
    }
    assert after["abcde_00000"][4] == {
        "knn_accuracy": [(10, 0.5), (20, 0.8)],
        "recon_error": [(10, 0.5), (20, 0.2)],
    }
    assert after["abcde_00001"][4]["knn_accuracy"] == [(10, 0.1)]
    assert after["abcde_00002"][3]["lr"] == "0.01" and after["abcde_00002"][3]["iterations"] == "20"
    names = {
        r.data.tags["tuner.trial_id"]: r.info.run_name
        for r in MlflowClient(tracking_uri=uri).search_runs(
            [MlflowClient(tracking_uri=uri).get_experiment_by_name("exp").experiment_id],
            "tags.`tuner.role` = 'trial'",
        )
    }
    # sync names the runs it creates by their values
    assert names["abcde_00002"] == "pairwise ae lr=0.01"
    assert after["abcde_00000"][5] == {
        "embedding.png",
        "reconstructions.png",
        "loss_curves.png",
        "images",
    }
    assert after["abcde_00001"][5] == {"error.txt"} and after["abcde_00002"][5] == set()
    error = MlflowClient(tracking_uri=uri).download_artifacts(
        after["abcde_00001"][0], "error.txt", str(tmp_path)
    )
    assert (
        Path(error)
        .read_text()
        .startswith("tuner.errors.TrainingDiverged: the loss became nan\n\nTraceback")
    )
    assert after["s9"][4]["best_knn_accuracy"] == [(0, 0.8)] and "summary.csv" in after["s9"][5]
    # 2 new runs; metrics: 2 (00000 step 20) + 2 + 2 (the new runs) + best_knn_accuracy +
    # best_recon_error.
    assert written["runs"] == 2 and written["metrics"] == 8
    assert not (exp_dir / SPOOL_DIR).exists()  # all of it is in MLflow now

    # the search's own directory works too
    assert sync_search(exp_dir, None, uri, verbose=False) == {}
    assert sync_search(exp_dir, "exp", uri, verbose=False) == {}  # as the hint has it
    assert snapshot(uri) == after  # nothing doubled, nothing touched


@pytest.mark.parametrize("cut", ["", '{\n  "lr": 0.0'], ids=["empty", "partial"])
def test_a_params_file_cut_short_by_a_full_disk_waits_for_tune_to_write_it_again(
    tmp_path: Path, cut: str
) -> None:
    """A disk that fills while Tune writes a trial's params.json leaves it empty or partial. The
    sync that --resume runs first skips that trial instead of failing the resume with a
    traceback; Tune writes the file again when the trial restarts, and the sync after the run
    reads it then."""
    exp_dir, uri = tune_dir(tmp_path / "ray"), empty_store(tmp_path)
    cut_trial = next(exp_dir.glob("run_trial_abcde_00002_*"))
    (cut_trial / "params.json").write_text(cut)
    records = read_trials(experiment_dir(str(tmp_path / "ray"), "exp"))
    assert sorted(r.trial_id for r in records) == ["abcde_00000", "abcde_00001", "abcde_00003"]

    sync_search(exp_dir, "exp", uri, verbose=False)
    assert set(snapshot(uri)) == {"s9", "abcde_00000", "abcde_00001"}  # 00003 never ran

    (cut_trial / "params.json").write_text(json.dumps({"lr": 0.01}))  # the restarted trial's
    sync_search(exp_dir, "exp", uri, verbose=False)
    assert snapshot(uri)["abcde_00002"][3]["lr"] == "0.01"


def test_sync_finds_the_search_or_says_what_to_pass(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(TunerError, match="no tuner searches there"):
        sync_search(tmp_path, None, uri, verbose=False)
    with pytest.raises(TunerError, match="--experiment 'nope': no tuner search there"):
        sync_search(tmp_path, "nope", uri, verbose=False)
    exp_dir = tune_dir(tmp_path)
    shutil.copytree(exp_dir, tmp_path / "exp-20260101-000000")  # an earlier search, moved aside
    with pytest.raises(
        TunerError, match=r"several tuner searches there \(exp, exp-20260101-000000\)"
    ):
        sync_search(tmp_path, None, uri, verbose=False)


def test_trial_and_search_status_rules() -> None:
    def record(iterations: list[float], error: str | None = None) -> StoredTrial:
        return StoredTrial("t", {}, [{"iteration": i} for i in iterations], error, None)

    assert record_status(record([10, 20]), 20) == "FINISHED"
    # a retried crash that then finished
    assert record_status(record([10, 20], DIVERGED), 20) == "FINISHED"
    assert record_status(record([10], DIVERGED), 20) == "FAILED"
    assert record_status(record([], DIVERGED), 20) == "FAILED"
    assert record_status(record([10]), 20) == "KILLED"
    assert record_status(record([]), 20) is None
    # ASHA stopped one
    assert search_status(["FINISHED", "FAILED", "KILLED"], 3, scheduled=True) == "FINISHED"
    assert search_status(["FINISHED", "FAILED", "KILLED"], 3, scheduled=False) == "KILLED"
    # a trial never started
    assert search_status(["FINISHED", "FINISHED"], 3, scheduled=True) == "KILLED"
    # interrupted
    assert search_status(["FINISHED", "UNFINISHED", "FINISHED"], 3, scheduled=True) == "KILLED"


def test_a_bad_request_is_not_an_outage(tmp_path: Path) -> None:
    import requests
    from mlflow.exceptions import MlflowException

    tracker = SearchTracker.open(empty_store(tmp_path), "exp", "s", SPEC_YAML, {}, {}, resume=False)
    with pytest.raises(MlflowException, match="bad@key"):
        tracker.trial_started("t", {"bad@key": 1})
    assert not tracker.offline
    with pytest.raises(ValueError, match="trial status 'DONE'"):
        tracker.trial_finished("t", "DONE")
    assert unreachable(
        MlflowException(
            "API request to http://h/api failed with exception "
            "HTTPConnectionPool(host='h', port=1): Max retries exceeded"
        )
    )
    with pytest.raises(requests.exceptions.ConnectionError) as refused:
        requests.get(f"http://127.0.0.1:{free_port()}", timeout=5)
    assert unreachable(refused.value)
    assert not unreachable(MlflowException("RESOURCE_DOES_NOT_EXIST: run abc not found"))


def test_a_parent_whose_start_cannot_be_logged_ends_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error after the parent run exists (here: logging the search file) must not leave it
    RUNNING."""
    import tuner.tracking.parent as parent

    def broken(*args, **kwargs):
        raise OSError("artifact store gone")

    monkeypatch.setattr(parent, "log_search_start", broken)
    uri = empty_store(tmp_path)
    with pytest.raises(OSError, match="artifact store gone"):
        SearchTracker.open(uri, "exp", "s1", SPEC_YAML, {}, SEARCH_PARAMS, resume=False)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_a_setting_longer_than_mlflow_keeps_is_read_back_whole(tmp_path: Path) -> None:
    """MLflow cuts a param past 6,000 characters with only a warning: composite_labels merging
    1,000 classes (9,890 characters) then made `tuner train --from-run` fail and warm start skip
    every such trial as trained with other settings."""
    from tuner.core.config import TrialConfig
    from tuner.core.params import FULL_PARAMS, PARAM_LIMIT, stored_text, to_text
    from tuner.space.load import load_spec
    from tuner.tracking.rerun import config_from_run
    from tuner.tracking.warm_start import select

    merged = {i: i % 10 for i in range(1000)}
    cfg = TrialConfig(dataset="imagenet", composite_labels=merged, batch_size=20)
    uri = empty_store(tmp_path)
    tracker = SearchTracker.open(uri, "exp", "s1", SPEC_YAML, {}, SEARCH_PARAMS, resume=False)
    run_id = tracker.trial_started("t0", cfg.to_dict())
    client = MlflowClient(tracking_uri=uri)
    stored = client.get_run(run_id).data.params["composite_labels"]
    assert len(to_text(cfg.to_dict()["composite_labels"])) == 9890 and len(stored) == PARAM_LIMIT
    assert stored.endswith(")") and FULL_PARAMS in stored
    assert FULL_PARAMS in {f.path for f in client.list_artifacts(run_id)}
    rebuilt, _ = config_from_run(run_id, uri, {})
    assert rebuilt == cfg
    # Warm start compares the stored texts: the same long value matches, another one does not.
    space = tmp_path / "s.yaml"
    space.write_text(
        "search: optuna\nfixed:\n  dataset: imagenet\n  batch_size: 20\n  composite_labels: "
        + json.dumps(merged)
        + "\nparams:\n  mu: {uniform: [0.1, 0.9]}\n"
    )
    spec = load_spec(space)
    params = dict(client.get_run(run_id).data.params)
    assert select(spec, "s1", [("FINISHED", params, {"knn_accuracy": 0.7})]).points == [{"mu": 0.5}]
    other = {**params, "composite_labels": stored_text(to_text({**merged, 999: 0}))}
    assert select(spec, "s1", [("FINISHED", other, {"knn_accuracy": 0.7})]).other_settings == 1
