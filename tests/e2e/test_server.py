"""Against a real `mlflow server` over loopback (SQLite backend, artifacts served by the server).

A search logs the same parent and nested runs as with the embedded store; an unreachable
server stops `tuner search` before anything starts; a server lost mid-search loses nothing
once `tuner sync` has run, and a second sync changes nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.drivers import free_port, search_args
from tests.spaces import write_space
from tests.stores import empty_store
from tuner.cli import main
from tuner.tracking.store import HTTP_DEFAULTS

pytestmark = pytest.mark.slow
PNG = b"\x89PNG\r\n\x1a\n"
# A finished trial's plots, and images/: its embedding again, by step, for MLflow's image chart.
PLOTS = {"embedding.png", "loss_curves.png", "reconstructions.png", "images"}


@dataclass
class Server:
    """`mlflow server` as a user starts it, in its own process group so that all of it stops."""

    db: Path
    artifacts: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            empty_store(self.db.parent, self.db.name),
            "--artifacts-destination",
            str(self.artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        with open(self.db.with_suffix(".log"), "a") as log:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.db.with_suffix(".log").read_text()[-3000:]
            try:
                if urllib.request.urlopen(f"{self.uri}/health", timeout=2).status == 200:
                    return self
            except OSError:
                time.sleep(0.25)
        raise AssertionError("mlflow server did not answer /health in 120 s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module", autouse=True)
def _restore_http_settings():
    """connect() sets MLflow's HTTP retry defaults in the environment: give the others theirs
    back."""
    saved = {k: os.environ.get(k) for k in HTTP_DEFAULTS}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("server")
    srv = Server(tmp / "mlflow.db", tmp / "mlartifacts", free_port()).start()
    yield srv
    srv.stop()


def grid_space(path: Path, name: str, iterations: int, max_concurrent: int | None = None) -> Path:
    return write_space(
        path,
        f"""
        name: {name}
        search: grid
        max_concurrent: {max_concurrent or "null"}
        resources: {{cpus: 1}}
        fixed: {{hidden_dims: [32], batch_size: 40, knn_k: 3, iterations: {iterations}, \
eval_every: 20}}
        params:
          latent_dim: {{grid: [2, 4]}}
        """,
    )


def search_runs(uri: str, experiment: str) -> tuple:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("tuner.role") == "search"]
    assert len(parents) == 1
    trials = {
        r.data.tags["tuner.trial_id"]: r for r in runs if r.data.tags.get("tuner.role") == "trial"
    }
    assert len(trials) == len(runs) - 1  # one run per trial id: nothing doubled
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in trials.values())
    return exp, parents[0], trials


def tune_results(exp_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """trial id -> (iteration, knn_accuracy) of every result Tune kept, first report of a step
    wins."""
    out: dict[str, dict[int, float]] = {}
    for path in exp_dir.glob("run_trial_*/result.json"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            out.setdefault(row["trial_id"], {}).setdefault(
                int(row["iteration"]), row["knn_accuracy"]
            )
    return {t: sorted(steps.items()) for t, steps in out.items()}


def snapshot(uri: str, experiment: str) -> dict:
    client = MlflowClient(tracking_uri=uri)
    _, parent, trials = search_runs(uri, experiment)
    return {
        r.info.run_name: (
            r.info.run_id,
            r.info.status,
            r.info.end_time,
            r.data.params,
            {k: len(client.get_metric_history(r.info.run_id, k)) for k in r.data.metrics},
            sorted(a.path for a in client.list_artifacts(r.info.run_id)),
        )
        for r in [parent, *trials.values()]
    }


def test_unreachable_server_stops_the_search_before_anything_starts(tmp_path: Path) -> None:
    # A fresh interpreter, so whether Ray started does not depend on the tests before this one.
    port = free_port()  # bound then released: nothing listens there
    space = grid_space(tmp_path / "s.yaml", "nowhere", 40)
    args = search_args(space, tmp_path, uri=f"http://alice:s3cret@127.0.0.1:{port}")
    code = (
        f"import sys, ray; from tuner.cli import main; status = main({args!r}); "
        f"print('ray started:', ray.is_initialized()); sys.exit(status)"
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    # most of it is importing tuner's CLI
    assert proc.returncode == 2 and time.monotonic() - start < 60
    assert (
        f"tuner search: error: MLflow tracking URI 'http://***@127.0.0.1:{port}' cannot be used"
        in proc.stderr
    )
    assert (
        "s3cret" not in proc.stderr + proc.stdout
        and "alice" not in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert "ray started: False" in proc.stdout and not (tmp_path / "ray").exists()


def test_search_against_a_server_logs_runs_and_serves_artifacts(
    server: Server, local_ray, tmp_path: Path, capsys
) -> None:
    from tuner.runner.search import run_search
    from tuner.space.load import load_spec

    spec = load_spec(grid_space(tmp_path / "srv.yaml", "srv", 40, max_concurrent=1))
    table = run_search(
        spec, tracking_uri=server.uri, storage_path=tmp_path / "ray", verbose=False
    ).trials
    assert sorted(table["status"]) == ["FINISHED", "FINISHED"]

    exp, parent, trials = search_runs(server.uri, "srv")
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # stored by the server, not by us
    assert parent.info.status == "FINISHED" and set(trials) == set(table["trial_id"])
    client = MlflowClient(tracking_uri=server.uri)
    assert {"search.yaml", "spec.json", "summary.csv"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }
    for trial_id, run in trials.items():
        row = table[table["trial_id"] == trial_id].iloc[0]
        assert (
            run.info.status == "FINISHED"
            and int(run.data.params["latent_dim"]) == row["latent_dim"]
        )
        history = client.get_metric_history(run.info.run_id, "knn_accuracy")
        assert [m.step for m in history] == [20, 40] and history[-1].value == pytest.approx(
            row["knn_accuracy"]
        )
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == PLOTS
    some = next(iter(trials.values()))
    png = Path(client.download_artifacts(some.info.run_id, "embedding.png", str(tmp_path)))
    assert png.read_bytes().startswith(PNG)
    assert list(server.artifacts.rglob("embedding.png"))  # the server's own artifact store holds it

    capsys.readouterr()
    assert (
        main(["sync", "--storage-path", str(tmp_path / "ray"), "--tracking-uri", server.uri]) == 0
    )
    # a complete search: sync writes nothing
    assert "nothing was missing" in capsys.readouterr().out


class Killer(threading.Thread):
    """Stops the server as soon as MLflow holds a trial's first metric: mid-search."""

    def __init__(self, server: Server, experiment: str) -> None:
        super().__init__(daemon=True)
        self.server, self.experiment = server, experiment
        self.killed_at: float | None = None
        self.done = threading.Event()

    def run(self) -> None:
        client = MlflowClient(tracking_uri=self.server.uri)
        while not self.done.is_set():
            try:
                exp = client.get_experiment_by_name(self.experiment)
                runs = (
                    client.search_runs([exp.experiment_id], "tags.`tuner.role` = 'trial'")
                    if exp
                    else []
                )
                if any("knn_accuracy" in r.data.metrics for r in runs):
                    self.server.stop()
                    self.killed_at = time.monotonic()
                    return
            except Exception:  # noqa: BLE001 - not there yet
                pass
            time.sleep(0.2)


def assert_complete(uri: str, exp_dir: Path, trial_ids: set[str], evaluations: int) -> None:
    """One run per trial, FINISHED, with every step Tune kept (`evaluations` of them) and the
    plots; the parent ended."""
    _, parent, trials = search_runs(uri, exp_dir.name)
    expected = tune_results(exp_dir)
    assert set(trials) == set(expected) == trial_ids
    client = MlflowClient(tracking_uri=uri)
    for trial_id, run in trials.items():
        history = [
            (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "knn_accuracy")
        ]
        assert sorted(history) == expected[trial_id] and len(history) == evaluations
        assert run.info.status == "FINISHED"
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == PLOTS
    assert parent.info.status == "FINISHED"
    best = max(v for steps in expected.values() for _, v in steps[-1:])
    assert parent.data.metrics["best_knn_accuracy"] == pytest.approx(best)


def test_server_lost_mid_search_then_sync_fills_the_gaps(local_ray, tmp_path: Path, capfd) -> None:
    from tuner.runner.search import run_search
    from tuner.space.load import load_spec

    srv = Server(tmp_path / "lost.db", tmp_path / "lost-artifacts", free_port()).start()
    killer = Killer(srv, "lost")
    try:
        killer.start()
        # 600 iterations: the server's stop (a SIGTERM, up to seconds) must land before the two
        # trials end; at 200 the margin was ~3 s and shrinks as trials get faster.
        spec = load_spec(grid_space(tmp_path / "lost.yaml", "lost", 600, max_concurrent=1))
        table = run_search(
            spec, tracking_uri=srv.uri, storage_path=tmp_path / "ray", verbose=False
        ).trials
        ended_at = time.monotonic()
        killer.done.set()
        killer.join(timeout=30)
        assert killer.killed_at is not None and killer.killed_at < ended_at, (
            "the server was not stopped mid-search"
        )
        assert sorted(table["status"]) == [
            "FINISHED",
            "FINISHED",
        ]  # the search went on without MLflow
        err = capfd.readouterr().err
        assert err.count("stopped answering") == 1 and f"--tracking-uri {srv.uri}" in err
        assert "tuner sync --storage-path" in err

        srv.start()  # back, same port and store
        # the search could not end it
        assert search_runs(srv.uri, "lost")[1].info.status == "RUNNING"
        sync = [
            "sync",
            "--storage-path",
            str(tmp_path / "ray"),
            "--experiment",
            "lost",
            "--tracking-uri",
            srv.uri,
        ]
        assert main(sync) == 0
        assert_complete(
            srv.uri, tmp_path / "ray" / "lost", set(table["trial_id"]), evaluations=600 // 20
        )

        before = snapshot(srv.uri, "lost")
        capfd.readouterr()
        assert main(sync) == 0
        assert "nothing was missing" in capfd.readouterr().out
        assert snapshot(srv.uri, "lost") == before  # same runs, same histories, same end times
    finally:
        killer.done.set()
        srv.stop()
