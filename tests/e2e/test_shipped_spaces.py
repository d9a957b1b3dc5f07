"""The shipped model-based searches, run as a user runs them but shrunk on the command line:
`optuna.yaml` (TPE + ASHA) and `pareto.yaml` (multi-objective TPE + moasha) with six samples of
300 iterations, one at a time. Each keeps its own scheduler, ranges and metrics, so what is
checked is the file as shipped: every sampled setting inside the file's range, the scheduler
stopping trials at its rungs, the chosen trial registered, all of it in MLflow. `tuner search`
runs in the test's process (its command line, from a directory of its own); `grid.yaml` runs
whole in test_readme_job.py, in a process of its own as typed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.paths import SPACES

pytestmark = pytest.mark.slow

# One trial at a time: one trial worker instead of the file's two, and each trial meets the rungs
# its predecessors left, so the scheduler's decisions do not hang on which trial ran faster.
SHRINK = [
    *("--samples", "6", "--max-concurrent", "1"),
    *("--set", "iterations=300", "--set", "eval_every=50"),
]


def _inside(value: float, spec: dict) -> bool:
    """Whether a sampled value lies in the range the search file gives for it."""
    kind, bounds = next(iter(spec.items()))
    low, high = bounds[0], bounds[1]
    if kind == "qrandint" and (value - low) % bounds[2]:
        return False
    return low <= value <= high


@pytest.mark.parametrize("name", ["optuna", "pareto"])
def test_a_shipped_search_file_runs_shrunk_and_keeps_its_ranges_and_scheduler(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    from tuner.cli import main

    path = SPACES / f"{name}.yaml"
    space = yaml.safe_load(path.read_text())
    monkeypatch.chdir(tmp_path)  # ./mlflow.db and ./ray_results, as the README's command makes
    assert main(["search", "--space", str(path), *SHRINK]) == 0
    printed = capsys.readouterr().out
    counted = re.search(r"search finished: 6 trials \((\d+) finished, (\d+) killed\)", printed)
    assert counted, printed[-3000:]
    finished, stopped = map(int, counted.groups())

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name(space["name"])
    runs = client.search_runs([exp.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags.get("tuner.role") == "trial"]
    assert len(trials) == 6 and finished + stopped == 6
    statuses = [t.info.status for t in trials]
    assert statuses.count("FINISHED") == finished and statuses.count("KILLED") == stopped
    # The scheduler of the file stopped trials at a rung: before the last evaluation, after its
    # grace.
    grace = space["scheduler"]["grace_period"]
    for trial in trials:
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, "knn_accuracy")]
        if trial.info.status == "KILLED":
            assert grace <= max(steps) < 300, (trial.data.tags["tuner.trial_id"], steps)
        else:
            assert max(steps) == 300
    assert stopped > 0, "six trials of a shipped ASHA/moasha file, none stopped: rungs not applied"

    for trial in trials:  # the shrink applied, the file's ranges kept
        assert trial.data.params["iterations"] == "300"
        for setting, spec in space["params"].items():
            value = yaml.safe_load(trial.data.params[setting])
            assert _inside(value, spec), (setting, value, spec)
    for metric in space["metric"] if isinstance(space["metric"], list) else [space["metric"]]:
        assert all(metric in t.data.metrics for t in trials)

    chosen = re.search(r"registered (\w+) as models:/([\w-]+)/1\b", printed)
    assert chosen and chosen.group(2) == space["name"], printed[-3000:]
    best = next(t for t in trials if t.data.tags["tuner.trial_id"] == chosen.group(1))
    assert best.info.status == "FINISHED" and "test_knn_accuracy" in best.data.metrics
