"""The README's main job, run as its first command runs it: `tuner search --space
search_spaces/grid.yaml` from a directory of its own (so ./mlflow.db and ./ray_results are new),
then what it printed and what it stored: every trial of the grid FINISHED, the best one read on
test, registered and loadable as the champion, and the report of the search."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml

from tests.drivers import run_cli
from tests.paths import SPACES

pytestmark = pytest.mark.slow

GRID = SPACES / "grid.yaml"


def test_the_readme_main_job_finishes_every_trial_registers_the_best_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    from tuner.cli import main
    from tuner.tracking.registry import load_model

    done = run_cli("search", "--space", str(GRID), cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    params = yaml.safe_load(GRID.read_text())["params"]
    grid = set(itertools.product(*(p["grid"] for p in params.values())))
    # the README's count: 2 constraints x 2 encoders x 3 weights x 2 latent sizes
    assert len(grid) == 24
    assert re.search(r"search finished: 24 trials \(24 finished\) in \d+ s", out), out[-3000:]

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("grid-digits")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("tuner.role") == "search"]
    trials = [r for r in runs if r.data.tags.get("tuner.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(trials) == 24 and {t.info.status for t in trials} == {"FINISHED"}
    searched = {tuple(yaml.safe_load(t.data.params[k]) for k in params) for t in trials}
    assert searched == grid  # each combination once
    assert all(t.data.params["iterations"] == "400" for t in trials)  # the file's, not shrunk

    # Printed: the best trials first, the command that opens the UI, the registered model.
    table = out.split("best trials by knn_accuracy (max) on validation; test_* read once")[1]
    best_id = table.split("\n")[2].split()[0]
    best = next(t for t in trials if t.data.tags["tuner.trial_id"] == best_id)
    assert best.data.metrics["knn_accuracy"] == max(t.data.metrics["knn_accuracy"] for t in trials)
    assert f"tuner ui --tracking-uri {uri}" in out
    assert f"registered {best_id} as models:/grid-digits/1" in out
    # Read on test: the best trial only.
    assert [
        t.data.tags["tuner.trial_id"] for t in trials if "test_knn_accuracy" in t.data.metrics
    ] == [best_id]

    version = client.get_model_version_by_alias("grid-digits", "champion")
    assert (str(version.version), version.run_id) == ("1", best.info.run_id)
    model = load_model("models:/grid-digits@champion", tracking_uri=uri)
    assert {k: str(v) for k, v in model.config.to_dict().items() if k in params} == {
        k: best.data.params[k] for k in params
    }
    note = parents[0].data.tags["mlflow.note.content"]
    assert f"### Best trial: `{best_id}`" in note
    assert "### Registered model\n`models:/grid-digits/1` (alias `champion`: version 1)" in note

    stored = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"report.html", "summary.csv", "search.yaml"} <= stored
    # `tuner report` from the same directory, in this process (it only reads the store).
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["report"]) == 0
    head, rows = capsys.readouterr().out.split("\n\n")[0].split("\n", 1)
    assert head.endswith("in experiment 'grid-digits': 24 trials, sorted by knn_accuracy (max)"), (
        head
    )
    rows = rows.splitlines()[1:]  # under the column names
    assert (
        len(rows) == 24
        and all(r.endswith(" FINISHED") for r in rows)
        and rows[0].split()[0] == best_id
    )
