"""`tuner ui` in a real browser: headless Chromium renders MLflow's UI of finished searches.

One store holds three searches: two written by SearchTracker the way a search writes them (with
real PNG plots, and with registered models), then a real one, the newest. One UI serves them all,
started through the CLI (`tuner ui`, default host): each test opens the link it printed, moved to
its search's experiment (a UI costs about 9 core-s to start: its own process, MLflow's server and
its web worker each import MLflow).
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.browser import CHROMIUM
from tests.drivers import free_port
from tests.stores import empty_store
from tuner.tracking.writer import SearchTracker
from tuner.trainer import plots

pytestmark = pytest.mark.slow
PNG = b"\x89PNG\r\n\x1a\n"
TRIALS = {
    "ab12c_00000": (2, 0.91),
    "ab12c_00001": (8, 0.95),
    "ab12c_00002": (16, 0.88),
}  # latent_dim, accuracy


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the one store the module's searches are written to."""
    return tmp_path_factory.mktemp("ui-store")


@pytest.fixture(scope="module")
def store(folder: Path) -> tuple[str, SearchTracker, Path]:
    """A finished search of three trials, each with its embedding and loss plots."""
    uri = empty_store(folder)
    tracker = SearchTracker.open(
        uri,
        "ui-digits",
        "ui-digits-1234abcd",
        "name: ui-digits\n",
        {},
        {"metric": "knn_accuracy", "mode": "max"},
        resume=False,
    )
    rng, rows = np.random.default_rng(0), []
    for trial_id, (dim, acc) in TRIALS.items():
        tracker.trial_started(trial_id, {"latent_dim": dim, "mu": 0.5})
        for step in (100, 200):
            tracker.log_metrics(
                trial_id, {"knn_accuracy": acc * step / 200, "recon_error": 1 / step}, step
            )
        out = folder / trial_id
        out.mkdir()
        labels = np.repeat(np.arange(3), 30)
        plots.plot_embedding(
            rng.normal(size=(90, 2)) + labels[:, None],
            labels,
            ["0", "1", "2"],
            out / "embedding.png",
            title=trial_id,
        )
        plots.plot_loss_curves(
            [{"iteration": 100.0, "loss": 1.0}, {"iteration": 200.0, "loss": 0.5}],
            out / "loss_curves.png",
        )
        tracker.trial_finished(trial_id, "FINISHED", artifact_dir=out)
        rows.append(
            {"trial_id": trial_id, "latent_dim": dim, "knn_accuracy": acc, "recon_error": 0.005}
        )
    tracker.finish(pd.DataFrame(rows), "knn_accuracy", "max")
    return uri, tracker, folder


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port` (from /proc: no traffic sent)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def start_ui(uri: str, port: int) -> tuple[subprocess.Popen, str]:
    """`tuner ui` as typed (default host), up and answering; returns it and the link it printed."""
    argv = ["ui", "--tracking-uri", uri, "--port", str(port)]
    code = f"import sys; from tuner.cli import main; sys.exit(main({argv!r}))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    printed = proc.stdout.readline() + proc.stdout.readline()
    link = re.search(r"http://\S+", printed)
    deadline, status = time.monotonic() + 120, None
    while link and time.monotonic() < deadline and status is None and proc.poll() is None:
        try:
            status = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status
        except OSError:
            time.sleep(0.25)
    if status != 200:
        stop(proc)
        raise AssertionError(f"tuner ui did not come up: {printed}")
    return proc, link.group(0)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as in a terminal
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass(frozen=True)
class UI:
    """The module's `tuner ui`: its port and the link it printed (to the newest search)."""

    port: int
    link: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def link_to(self, experiment_id: str) -> str:
        """The printed link, moved to another experiment: the same view and query."""
        moved, found = re.subn(
            r"/#/experiments/\d+/", f"/#/experiments/{experiment_id}/", self.link
        )
        assert found == 1, self.link
        return moved


@pytest.fixture(scope="module")
def ui(store, model_store, searched) -> Iterator[UI]:
    """`tuner ui` on the module's store, once its three searches are there (the real one, asked
    for last, is the newest)."""
    need_chromium()
    port = free_port()
    proc, link = start_ui(store[0], port)
    try:
        yield UI(port, link)
    finally:
        stop(proc)


# The runs table's rows, top to bottom, each as its text (AG Grid splits a row over its pinned and
# scrolled parts: rows of one aria-rowindex are one row).
ROWS = """(() => { const rows = {};
  document.querySelectorAll('.ag-row[aria-rowindex]').forEach(r => {
    const i = Number(r.getAttribute('aria-rowindex')); \
rows[i] = (rows[i] || '') + ' ' + r.textContent; });
  const order = Object.keys(rows).map(Number).sort((a, b) => a - b).map(i => rows[i]);
  return IDS.every(id => order.some(row => row.includes(id))) ? order : null; })()"""


def test_ui_lists_the_trial_runs_and_serves_their_plots(ui: UI, store, tmp_path: Path) -> None:
    from tests.browser import Page

    uri, tracker, tmp = store
    port, url = ui.port, ui.link_to(tracker.experiment_id)
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only, as --host defaults
    with Page(url, tmp_path / "profile") as page:
        dom = page.html_once(*TRIALS)
        for trial_id in (*TRIALS, "ui-digits-1234abcd"):
            assert trial_id in dom, f"{trial_id} is not on the page"
        # The view tuner saved orders the runs by the search's metric, best first: not the
        # order they were started in, MLflow's own.
        rows = page.value(ROWS.replace("IDS", json.dumps(list(TRIALS))), "the runs table's rows")
        assert [t for row in rows for t in TRIALS if t in row] == sorted(
            TRIALS, key=lambda t: -TRIALS[t][1]
        )
        shot = page.screenshot()
    assert shot.startswith(PNG) and len(shot) > 20_000

    run_id = tracker.trial_started("ab12c_00001", {})
    served = urllib.request.urlopen(
        f"http://127.0.0.1:{port}/get-artifact?path=embedding.png&run_uuid={run_id}", timeout=30
    )
    assert served.status == 200
    assert served.read() == (tmp / "ab12c_00001" / "embedding.png").read_bytes()


def page_text(dom: str) -> str:
    """What a person reads on the page: its text nodes, in order, joined by ' | '."""
    body = re.sub(r"<script.*?</script>|<style.*?</style>", "", dom, flags=re.S)
    # the alias reads "@&nbsp;champion"
    text = html.unescape(re.sub(r"<[^>]+>", "\n", body)).replace("\xa0", " ")
    return " | ".join(t.strip() for t in text.splitlines() if t.strip())


@pytest.fixture(scope="module")
def model_store(folder: Path) -> tuple[str, SearchTracker]:
    """A search whose two trials' models were registered: version 1 (better) holds champion."""
    from tuner.core.config import TrialConfig
    from tuner.data import load_features
    from tuner.data.inputs import split_images
    from tuner.embedding import EmbeddingModel
    from tuner.tracking.note import record_registered
    from tuner.tracking.registry import log_model, register_model
    from tuner.trainer.train import fit

    uri = empty_store(folder)
    tracker = SearchTracker.open(
        uri,
        "ui-models",
        "ui-models-5678abcd",
        "name: ui-models\n",
        {},
        {"metric": "knn_accuracy", "mode": "max", "space_file": "models.yaml"},
        resume=False,
    )
    cfg = TrialConfig(iterations=1, eval_every=1)
    data = load_features(cfg, progress=False)
    model = EmbeddingModel.from_training(cfg, fit(cfg, data).model, data)
    rows = []
    for trial_id, name, acc in (
        ("cd34e_00000", "pairwise ae d=2", 0.9),
        ("cd34e_00001", "pairwise ae d=8", 0.8),
    ):
        run_id = tracker.trial_started(trial_id, cfg.to_dict(), run_name=name)
        tracker.log_metrics(trial_id, {"knn_accuracy": acc, "recon_error": 0.1}, 1)
        tracker.trial_finished(trial_id, "FINISHED")
        info = log_model(tracker.client, run_id, model, split_images(cfg, "test").images[:3])
        reg = register_model(
            tracker.client,
            "ui-embedder",
            info,
            run_id,
            {"knn_accuracy": acc},
            "knn_accuracy",
            "max",
        )
        rows.append({"trial_id": trial_id, "knn_accuracy": acc, "recon_error": 0.1})
    assert (reg.version, reg.champion) == (2, 1)  # the worse second version left champion on 1
    record_registered(tracker.client, tracker.parent_run_id, reg.name, reg.version, reg.champion)
    tracker.finish(pd.DataFrame(rows), "knn_accuracy", "max")
    return uri, tracker


def test_ui_opens_the_training_view_and_shows_the_champion(
    ui: UI, model_store, tmp_path: Path
) -> None:
    from tests.browser import Page

    _, tracker = model_store
    url, base = ui.link_to(tracker.experiment_id), ui.base
    assert url.endswith("&workflowType=machine_learning")
    with Page(url, tmp_path / "profile") as page:
        # The link tuner ui prints opens the model-training view: its nav, the runs table.
        training = page_text(page.html_once("pairwise ae d=2"))
        assert "| Model registry |" in training and "Token Usage" not in training

        page.goto(f"{base}/#/models/ui-embedder")
        models = page_text(page.html_once("Version 2", "Version 1", "champion"))
        newer, older = models.split("| Version 2 |")[1].split("| Version 1 |")
        assert "champion" not in newer and "| @ champion" in older.split("| Previous |")[0]

        run_page = (
            f"{base}/#/experiments/{tracker.experiment_id}/runs/{tracker.parent_run_id}"
            "?workflowType=machine_learning"
        )
        page.goto(run_page)
        described = page_text(page.html_once("Best trial:", "models:/ui-embedder/2"))
        assert "| Description |" in described and "| Best trial: | cd34e_00000 |" in described
        assert "| models:/ui-embedder/2 | (alias | champion | : version 1) |" in described


# ------------------------------------------------------------ the comparison view of a real search

SETTINGS = ["mu", "latent_dim"]  # in the search file's order, which is not the alphabetical one


@pytest.fixture(scope="module")
def searched(folder: Path) -> tuple[str, object, list]:
    """A finished grid search of 6 tiny trials, run as `tuner search` runs it (Ray, Tune,
    MLflow), one at a time: one trial worker."""
    from mlflow import MlflowClient

    from tuner.runner.search import run_search
    from tuner.space.load import load_spec

    space = folder / "compare.yaml"
    space.write_text("""name: ui-compare
search: grid
max_concurrent: 1
fixed: {hidden_dims: [32], batch_size: 40, knn_k: 3, iterations: 20, eval_every: 10}
params:
  mu: {grid: [0.1, 0.5, 0.9]}
  latent_dim: {grid: [2, 4]}
""")
    uri = empty_store(folder)
    run_search(load_spec(space), tracking_uri=uri, storage_path=folder / "ray", verbose=False)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("ui-compare").experiment_id], max_results=100
    )
    parent = next(r for r in runs if r.data.tags.get("tuner.role") == "search")
    return uri, parent, [r for r in runs if r.data.tags.get("tuner.role") == "trial"]


def need_chromium() -> None:
    if CHROMIUM is None:  # .ci/run installs it: a missing browser there is a broken CI, not a skip
        if os.environ.get("CI"):
            pytest.fail(
                "chromium is not installed, and CI must run the browser test (.ci/run installs it)"
            )
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")


# The visible header cells, left to right (AG Grid places them by style, not in DOM order).
HEADERS = """(() => { const cells = [...document.querySelectorAll('.ag-header-cell[col-id]')]
  .map(e => [e.getAttribute('col-id'), e.getBoundingClientRect().left])\
.filter(c => /^(params|metrics)\\./.test(c[0]));
  return cells.length >= 4 ? cells.sort((a, b) => a[1] - b[1]).map(c => c[0]) : null; })()"""
# Chart cards in order: their titles, and the points of the first (the scatter's plot).
CARDS = """(() => { const cards = \
[...document.querySelectorAll('[data-testid="experiment-view-compare-runs-card"]')];
  const points = cards.length ? cards[0].querySelectorAll('.scatterlayer path.point').length : 0;
  return cards.length >= 3 && points ? \
{titles: cards.map(c => (c.querySelector('h4') || {}).textContent), points}
    : null; })()"""
# MLflow draws parallel coordinates on a canvas: the lines are the rows its chart component was
# given.
PARALLEL = """(() => { const el = document.querySelector('.parcoords'); if (!el) return null;
  let f = el[Object.keys(el).find(k => k.startsWith('__reactFiber'))];
  while (f && !(f.memoizedProps && Array.isArray(f.memoizedProps.data) && \
f.memoizedProps.selectedParams)) f = f.return;
  return f ? {lines: f.memoizedProps.data.length, params: f.memoizedProps.selectedParams,
              metrics: f.memoizedProps.selectedMetrics} : null; })()"""
FRONT = """(() => { const traces = document.querySelectorAll('#front-plot .scatterlayer .trace');
  return traces.length === 2 ? {others: traces[0].querySelectorAll('path.point').length,
                                front: traces[1].querySelectorAll('path.point').length,
                                title: document.querySelector('#front-plot .gtitle').textContent} \
: null; })()"""


def test_ui_opens_on_the_comparison_of_the_trials(ui: UI, searched, tmp_path: Path) -> None:
    from tests.browser import Page

    uri, parent, trials = searched
    finished = [t for t in trials if t.info.status == "FINISHED"]
    assert len(trials) == 6 and len(finished) == 6
    port, url = ui.port, ui.link
    # The link opens the newest search's experiment, in the view tuner saved.
    assert url == (
        f"{ui.base}/#/experiments/{parent.info.experiment_id}/runs"
        "?viewStateShareKey=tuner&workflowType=machine_learning"
    )
    with Page(url, tmp_path / "profile") as page:
        assert page.value(HEADERS, "the runs table's columns") == [
            "params.`mu`",
            "params.`latent_dim`",
            "metrics.`knn_accuracy`",
            "metrics.`recon_error`",
            "metrics.`test_knn_accuracy`",
            "metrics.`test_recon_error`",
        ]
        page.goto(url + "&compareRunsMode=CHART")
        cards = page.value(CARDS, "the chart cards")
        # MLflow titles a scatter "x vs. y"
        assert cards["titles"][:3] == [
            "recon_error vs. knn_accuracy",
            "Parallel Coordinates",
            "knn_accuracy",
        ]
        # one point per trial; the parent has no knn_accuracy
        assert cards["points"] == len(finished)
        parallel = page.value(PARALLEL, "the parallel-coordinates chart")
        assert parallel == {
            "lines": len(finished),
            "params": SETTINGS,
            "metrics": ["knn_accuracy", "recon_error"],
        }
        # report.html in the parent run's artifact viewer: MLflow shows it in a sandboxed frame
        # of a blob: URL
        page.goto(
            f"http://127.0.0.1:{port}/#/experiments/{parent.info.experiment_id}/runs/"
            f"{parent.info.run_id}/artifacts/report.html"
        )
        front = page.value(FRONT, "the report's front", frame_url_part="blob:")
    assert front["front"] + front["others"] == len(finished)
    assert front["title"].endswith(f": {front['front']} trials on the front")
    assert front["front"] == pareto_size(finished)


def pareto_size(runs: list) -> int:
    from tuner.core.selection import pareto_mask

    values = np.array(
        [[r.data.metrics["knn_accuracy"], r.data.metrics["recon_error"]] for r in runs]
    )
    return int(pareto_mask(values, ["max", "min"]).sum())


def test_a_search_logs_its_data_importances_and_embedding_steps(searched) -> None:
    from mlflow import MlflowClient

    uri, parent, trials = searched
    client = MlflowClient(tracking_uri=uri)
    from tuner.core.config import TrialConfig
    from tuner.data import load_features

    data = load_features(TrialConfig(dataset="digits"), progress=False)
    contexts = {
        i.dataset.name: {t.key: t.value for t in i.tags}["mlflow.data.context"]
        for i in parent.inputs.dataset_inputs
    }
    assert contexts == {
        "digits/raw train": f"train ({len(data.x_train)} rows)",
        "digits/raw validation": f"validation ({len(data.x_val)} rows)",
        "digits/raw test": f"test ({len(data.x_test)} rows)",
    }
    digests = {i.dataset.name: i.dataset.digest for i in parent.inputs.dataset_inputs}
    assert len(set(digests.values())) == 3  # each split its own digest
    for trial in trials:  # a trial reads train and validation, the same arrays as its search
        assert {i.dataset.name: i.dataset.digest for i in trial.inputs.dataset_inputs} == {
            k: v for k, v in digests.items() if not k.endswith(" test")
        }
        steps = {m.step for m in client.get_metric_history(trial.info.run_id, "knn_accuracy")}
        images = [a.path for a in client.list_artifacts(trial.info.run_id, "images")]
        assert any(p.startswith(f"images/embedding+step+{max(steps)}+") for p in images), images
    shares = {
        k: v for k, v in parent.data.metrics.items() if k.startswith("importance_knn_accuracy_")
    }
    assert set(shares) == {"importance_knn_accuracy_mu", "importance_knn_accuracy_latent_dim"}
    assert abs(sum(shares.values()) - 1) < 1e-6
    assert {"importance.png", "report.html"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }
