"""A real two-node Ray cluster: `ray.cluster_utils.Cluster` starts a head and a worker node as
separate raylets (1 CPU each, loopback only); searches join it by address.

Checked through MlflowClient and Tune's results in storage: trials run on both nodes and their
plots reach MLflow; a worker-node trial reads no dataset file or feature cache (that node's
TUNER_DATA_DIR / TUNER_CACHE_DIR are empty directories; the MNIST files are where only the driver
looks); a diverging trial is retried per max_failures, then FAILED with its error; a worker node
killed mid-search moves its trial to the head, which continues from its checkpoint with one
unbroken MLflow history; a multi-node search without --storage-path is refused.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.spaces import write_space
from tests.stores import empty_store
from tuner.errors import TunerError
from tuner.runner.search import run_search
from tuner.space.load import load_spec

pytestmark = pytest.mark.slow
TINY = "{dataset: mnist, hidden_dims: [32], batch_size: 40, knn_k: 3, latent_dim: 2"


class TwoNodes:
    """The cluster, its worker node (re-added after a test removes it), and the worker's empty
    dirs."""

    def __init__(self, cluster, worker_dirs: Path) -> None:
        self.cluster, self.worker_dirs, self.worker = cluster, worker_dirs, None

    def ensure_worker(self):
        if self.worker is None:
            self.worker = self.cluster.add_node(
                num_cpus=1,
                node_ip_address="127.0.0.1",
                env_vars={
                    "TUNER_CACHE_DIR": str(self.worker_dirs / "cache"),
                    "TUNER_DATA_DIR": str(self.worker_dirs / "data"),
                },
            )
            self.cluster.wait_for_nodes()
        return self.worker

    def remove_worker(self) -> None:
        # SIGKILL: a node lost, not drained
        self.cluster.remove_node(self.worker, allow_graceful=False)
        self.worker = None

    def node_ids(self) -> tuple[str, str]:
        return self.cluster.head_node.node_id, self.ensure_worker().node_id

    def worker_dirs_untouched(self) -> bool:
        return not any(self.worker_dirs.glob("*/*"))


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory):
    import ray
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    worker_dirs = tmp_path_factory.mktemp("worker-node")
    for name in ("cache", "data"):
        (worker_dirs / name).mkdir()
    with pytest.MonkeyPatch.context() as mp:
        # On Linux Ray swaps 127.0.0.1 for the machine's address when a driver connects, unless
        # told this is a one-machine cluster (its env switch, also for the drivers we spawn).
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # A killed node is declared dead after ~2 s instead of ~30 s.
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,
                "node_ip_address": "127.0.0.1",
                "include_dashboard": False,
                "_system_config": {
                    "health_check_period_ms": 500,
                    "health_check_failure_threshold": 3,
                },
            },
        )
        nodes = TwoNodes(cluster, worker_dirs)
        try:
            nodes.ensure_worker()
            yield nodes
        finally:
            ray.shutdown()
            cluster.shutdown()


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random pixels in torchvision's raw MNIST layout (IDX files), 300 train / 100 test images."""
    root = tmp_path_factory.mktemp("driver-data")
    rng, raw = np.random.default_rng(0), root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 300), ("t10k", 100)):
        for kind, array in (
            ("images-idx3", rng.integers(0, 256, (n, 28, 28))),
            ("labels-idx1", np.arange(n) % 10),
        ):
            header = struct.pack(">I" + "I" * array.ndim, 0x800 + array.ndim, *array.shape)
            (raw / f"{split}-{kind}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())
    return root


def trial_runs(uri: str, experiment: str) -> tuple[object, list]:
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], max_results=1000
    )
    parents = [r for r in runs if r.data.tags.get("tuner.role") == "search"]
    assert len(parents) == 1
    return parents[0], [r for r in runs if r is not parents[0]]


def results_by_trial(exp_dir: Path) -> dict[str, list[dict]]:
    """Every result Tune recorded, per trial id, in order (a restored trial's results follow on)."""
    out = {}
    for path in exp_dir.glob("run_trial_*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:  # a trial that failed before its first report has none
            out[rows[0]["trial_id"]] = rows
    return out


def test_multi_node_search_without_storage_path_is_refused(
    two_nodes, tmp_path: Path, monkeypatch
) -> None:
    two_nodes.ensure_worker()
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path / "s.yaml", f"name: refused\nfixed: {TINY}, iterations: 20}}\n")
    uri = empty_store(tmp_path)
    with pytest.raises(TunerError, match=r"the Ray cluster has 2 nodes.*pass --storage-path"):
        run_search(
            load_spec(space), tracking_uri=uri, address=two_nodes.cluster.address, verbose=False
        )
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name("refused") is None  # no run at all
    # Nothing of the search in storage: only the experiment's lock file, which outlives every
    # search.
    assert [p.name for p in (tmp_path / "ray_results").iterdir()] == [".refused.lock"]


def test_trials_run_on_both_nodes_and_their_plots_reach_mlflow(
    two_nodes, mnist_dir: Path, tmp_path: Path
) -> None:
    head, worker = two_nodes.node_ids()
    space = write_space(
        tmp_path / "both.yaml",
        f"""
        name: cluster-both
        max_failures: 1
        fixed: {TINY}, iterations: 300, eval_every: 100}}
        params:
          lr: {{grid: [0.001, 0.002, 0.003, 1000000.0]}}   # lr 1e6 diverges at once, every time
        """,
    )
    uri = empty_store(tmp_path)
    # A storage URI, read and written through pyarrow (here the local filesystem every node sees).
    table = run_search(
        load_spec(space),
        tracking_uri=uri,
        storage_path=f"file://{tmp_path}/ray",
        address=two_nodes.cluster.address,
        data_dir=mnist_dir,
        verbose=False,
    ).trials
    statuses = dict(zip(table["lr"], table["status"]))
    assert statuses == {0.001: "FINISHED", 0.002: "FINISHED", 0.003: "FINISHED", 1e6: "FAILED"}

    results = results_by_trial(tmp_path / "ray" / "cluster-both")
    finished = set(table.loc[table["status"] == "FINISHED", "trial_id"])
    nodes = {tid: {r["node_id"] for r in rows} for tid, rows in results.items()}
    assert set(nodes) == finished  # the diverging trial never reported
    assert set().union(*nodes.values()) == {head, worker}  # both nodes trained

    parent, runs = trial_runs(uri, "cluster-both")
    assert parent.info.status == "FINISHED" and len(runs) == 4
    for run in runs:
        tid = run.data.tags["tuner.trial_id"]
        if tid in finished:
            check_finished_run(uri, run, nodes[tid])
        else:
            check_failed_run(uri, run, tmp_path)
    assert two_nodes.worker_dirs_untouched()  # no data files read, no cache written on the worker


def check_finished_run(uri: str, run, nodes: set[str]) -> None:
    """FINISHED, with the plots (they travelled in the last checkpoint) and the node(s) it ran
    on."""
    names = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(run.info.run_id)}
    assert run.info.status == "FINISHED"
    assert {"embedding.png", "loss_curves.png", "reconstructions.png"} <= names
    assert {n.split("/")[1] for n in run.data.tags["tuner.node"].split(",")} == nodes


def check_failed_run(uri: str, run, tmp_path: Path) -> None:
    """FAILED after one retry (max_failures: 1), with the error text as error.txt."""
    assert run.info.status == "FAILED"
    error = Path(
        MlflowClient(tracking_uri=uri).download_artifacts(
            run.info.run_id, "error.txt", str(tmp_path)
        )
    ).read_text()
    assert error.startswith("tuner.errors.TrainingDiverged: the loss became ")
    assert "Failure # 1" in error and "Failure # 2" in error and "Failure # 3" not in error


def checkpointed_trials(exp_dir: Path) -> set[str]:
    """Unfinished trials (no checkpoint with plots: a finished trial's last holds them; its earlier
    ones stay a while after it ends) with two checkpoints.

    Two: a trial reports again only after the driver took its previous result, so the first
    checkpoint is then surely the one Tune would restart the trial from.
    """
    checkpoints = list(exp_dir.glob("run_trial_*/checkpoint_*"))
    finished = {c.parent.name for c in checkpoints if (c / "plots").exists()}
    counts = Counter(c.parent.name for c in checkpoints if c.parent.name not in finished)
    return {trial for trial, n in counts.items() if n >= 2}


def search_losing_the_worker(
    two_nodes: TwoNodes, args: list[str], exp_dir: Path, log: Path
) -> None:
    """`tuner search --address` in a process of its own, as on a cluster; the worker node is
    killed once both running trials (one per node) have checkpointed."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuner.cli", "search", *args],
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 120
        while len(checkpointed_trials(exp_dir)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        two_nodes.remove_worker()
        assert proc.wait(timeout=150) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_lost_worker_node_moves_its_trial_which_resumes_from_its_checkpoint(
    two_nodes, mnist_dir: Path, tmp_path: Path
) -> None:
    head, worker = two_nodes.node_ids()
    space = write_space(
        tmp_path / "loss.yaml",
        f"""
        name: cluster-loss
        max_failures: 1              # a lost node counts as one failure of each trial on it
        fixed: {TINY}, iterations: 1000, eval_every: 100}}
        params:
          lr: {{grid: [0.001, 0.002]}}   # one trial per node
        """,
    )
    uri, exp_dir = empty_store(tmp_path), tmp_path / "ray" / "cluster-loss"
    search_losing_the_worker(
        two_nodes,
        [
            "--space",
            str(space),
            "--tracking-uri",
            uri,
            "--storage-path",
            str(tmp_path / "ray"),
            "--address",
            two_nodes.cluster.address,
            "--data-dir",
            str(mnist_dir),
        ],
        exp_dir,
        tmp_path / "driver.log",
    )

    parent, runs = trial_runs(uri, "cluster-loss")
    assert parent.info.status == "FINISHED"
    assert len(runs) == 2 == len({r.data.tags["tuner.trial_id"] for r in runs})  # no duplicate run
    assert {r.info.status for r in runs} == {"FINISHED"}
    client = MlflowClient(tracking_uri=uri)
    for run in runs:  # one history per trial: no gap, no repeated step
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "knn_accuracy")]
        assert steps == list(range(100, 1001, 100))

    results = results_by_trial(exp_dir)
    moved = {tid: rows for tid, rows in results.items() if rows[0]["node_id"] == worker}
    assert len(moved) == 1, {t: [r["node_id"][:8] for r in rows] for t, rows in results.items()}
    ((tid, rows),) = moved.items()
    after = [r for r in rows if r["node_id"] == head]
    assert after and rows[-1]["iteration"] == 1000  # it finished on the head...
    # ...from the worker's checkpoint, not from the start
    assert after[0]["restored_from_iteration"] >= 100
    assert after[0]["iteration"] == after[0]["restored_from_iteration"] + 100
    tags = {r.data.tags["tuner.trial_id"]: r.data.tags["tuner.node"] for r in runs}
    assert [n.split("/")[1] for n in tags[tid].split(",")] == [worker, head]
    assert two_nodes.worker_dirs_untouched()
