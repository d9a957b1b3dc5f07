"""One rule names a search's best (selection.selection / selection.chosen): the trials read on the
test split, the registered model, the parent run's best_* figures and description, the summary's
Pareto front and its `chosen:` line all agree. Before, the parent and the summary ranked every
row, so a failed trial, a stopped one, or the luckiest seed of a configuration that was not
selected could be named best while another was tested and registered."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient

import tuner.runner.search as search_module
from tests.spaces import spec_of
from tests.stores import empty_store
from tuner.core.selection import (
    TrialOutcome,
    chosen,
    chosen_text,
    pareto_mask,
    require_text,
    results_table,
    selection,
)
from tuner.data.features import FeatureSet
from tuner.runner.callback import TrackingCallback
from tuner.runner.final_test import selected_trials
from tuner.runner.models_step import best_of, chosen_trials
from tuner.runner.setup_clock import SetupClock
from tuner.space.spec import REPEAT_KEY, trial_config
from tuner.system.tune_storage import experiment_dir
from tuner.tracking.note import search_note
from tuner.tracking.tags import REQUIRE as REQUIRE_TAG
from tuner.tracking.writer import SearchTracker


def outcome(
    trial_id: str, status: str, mu: float, knn: float, recon: float, repeat: int = 0
) -> TrialOutcome:
    return TrialOutcome(
        trial_id,
        status,
        trial_config({}, {"mu": mu, REPEAT_KEY: repeat}).to_dict(),
        {
            "iteration": 1500 if status == "FINISHED" else 500,
            "knn_accuracy": knn,
            "recon_error": recon,
        },
    )


def table_of(spec, rows: list[TrialOutcome]) -> pd.DataFrame:
    searched = ["mu", "seed"] if spec.repeats > 1 else ["mu"]
    return results_table(rows, searched, spec.metric, spec.mode)


def parent_after_finish(
    tmp_path: Path, spec, table: pd.DataFrame
) -> tuple[str | None, dict[str, float], str]:
    """Finish a search with this table the way the driver does (test_* on the selected trials
    only): the parent run's best trial tag, metrics and description."""
    uri = empty_store(tmp_path)
    tracker = SearchTracker.open(
        uri,
        "exp",
        "exp-1",
        spec.text,
        spec.resolved(),
        {"metric": list(spec.metric), "mode": list(spec.mode)},
        False,
    )
    client = MlflowClient(uri)
    if spec.require:
        client.set_tag(tracker.parent_run_id, REQUIRE_TAG, require_text(spec.require))
    tested = selected_trials(spec, table)
    table = table.assign(
        test_knn_accuracy=[0.5 if t in tested else np.nan for t in table["trial_id"]]
    )
    tracker.finish(table, list(spec.metric), list(spec.mode), "FINISHED")
    parent = client.get_run(tracker.parent_run_id)
    return (
        parent.data.tags.get("tuner.best_trial_id"),
        parent.data.metrics,
        parent.data.tags["mlflow.note.content"],
    )


def test_a_failed_trial_with_the_best_figure_is_not_the_best(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, "params:\n  mu: {grid: [0.2, 0.5]}\n")
    table = table_of(
        spec, [outcome("x", "FAILED", 0.2, 0.99, 0.05), outcome("y", "FINISHED", 0.5, 0.95, 0.04)]
    )
    assert list(table["trial_id"]) == ["x", "y"]  # the table still shows every trial by its figure
    assert selected_trials(spec, table) == ["y"]
    assert best_of(spec, table, chosen_trials(spec, table)) == "y"
    best, metrics, note = parent_after_finish(tmp_path, spec, table)
    assert (
        best == "y" and metrics["best_knn_accuracy"] == 0.95 and metrics["test_knn_accuracy"] == 0.5
    )
    assert "Best trial: `y`" in note


def test_repeats_name_a_run_of_the_selected_configuration_not_the_luckiest_seed(
    tmp_path: Path,
) -> None:
    spec = spec_of(tmp_path, "repeats: 2\nparams:\n  mu: {grid: [0.2, 0.8]}\n")
    table = table_of(
        spec,
        [
            outcome("a0", "FINISHED", 0.2, 0.91, 0.1, 0),
            outcome("a1", "FINISHED", 0.2, 0.89, 0.1, 1),
            outcome("b0", "FINISHED", 0.8, 0.65, 0.1, 0),
            outcome("b1", "FINISHED", 0.8, 0.95, 0.1, 1),
        ],
    )
    assert selected_trials(spec, table) == ["a0", "a1"]  # mean 0.90 against 0.80
    best, metrics, _ = parent_after_finish(tmp_path, spec, table)
    assert (
        best == "a0"
        and metrics["best_knn_accuracy"] == 0.91
        and metrics["test_knn_accuracy"] == 0.5
    )
    # log_models: all logs every finished run; the registered one is still of the selected
    # configuration.
    every = spec_of(tmp_path, "repeats: 2\nlog_models: all\nparams:\n  mu: {grid: [0.2, 0.8]}\n")
    assert chosen_trials(every, table) == ["a0", "a1", "b1", "b0"]
    assert best_of(every, table, chosen_trials(every, table)) == "a0"
    # no logged model of the selection: none registered
    assert best_of(every, table, ["b0", "b1"]) is None


def test_require_is_read_on_the_configurations_mean_everywhere(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path, "repeats: 2\nrequire: {recon_error: 0.045}\nparams:\n  mu: {grid: [0.2, 0.8]}\n"
    )
    # a0 alone meets the bound with the best figure, but a's mean recon_error is 0.047.
    table = table_of(
        spec,
        [
            outcome("a0", "FINISHED", 0.2, 0.99, 0.044, 0),
            outcome("a1", "FINISHED", 0.2, 0.90, 0.050, 1),
            outcome("b0", "FINISHED", 0.8, 0.95, 0.044, 0),
            outcome("b1", "FINISHED", 0.8, 0.94, 0.044, 1),
        ],
    )
    assert selected_trials(spec, table) == ["b0", "b1"]
    assert chosen(table, spec.metric, spec.mode, spec.require)["trial_id"] == "b0"
    text = chosen_text(table, spec.metric, spec.mode, spec.require, ["trial_id", "knn_accuracy"])
    assert text.splitlines()[-1].split() == ["b0", "0.95"]
    best, _, note = parent_after_finish(tmp_path, spec, table)
    assert best == "b0" and "Best trial: `b0`" in note


def test_the_front_shown_is_the_front_selected(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path, "metric: [knn_accuracy, recon_error]\nparams:\n  mu: {grid: [0.2, 0.5, 0.8]}\n"
    )
    # x, stopped or failed, would dominate both finished trials.
    for status in ("FAILED", "KILLED"):
        table = table_of(
            spec,
            [
                outcome("x", status, 0.2, 0.99, 0.01),
                outcome("y", "FINISHED", 0.5, 0.95, 0.04),
                outcome("z", "FINISHED", 0.8, 0.90, 0.02),
            ],
        )
        assert (
            list(table[table["pareto"]]["trial_id"]) == ["y", "z"] == selected_trials(spec, table)
        )
        note = search_note({"searched.mu": "x"}, {}, table, list(spec.metric), list(spec.mode))
        front = note[note.index("### Pareto front") :]
        assert (
            "2 trials" in front and "| y |" in front and "| z |" in front and "| x |" not in front
        )
    assert (
        selection(table.iloc[:0], spec.metric, spec.mode) == []
        and chosen(pd.DataFrame(), spec.metric, spec.mode) is None
    )


def _tiny_data() -> FeatureSet:
    x, y = np.zeros((4, 3), np.float32), np.array([0, 0, 1, 1])
    return FeatureSet(x, y, x, y, x, y, ("a", "b"))


def test_trial_runs_end_when_tune_raises(tmp_path: Path, monkeypatch) -> None:
    """A driver-side error inside Tuner.fit (Tune re-raises it after cleaning up) left the open
    trials' runs RUNNING for ever, beside a FAILED parent."""
    spec = spec_of(tmp_path, "name: r\nparams:\n  mu: {grid: [0.2, 0.5]}\n")
    uri = empty_store(tmp_path)
    tracker = SearchTracker.open(
        uri, "r", "r-1", spec.text, spec.resolved(), {"metric": ["knn_accuracy"]}, False
    )

    class RaisingTuner:
        def __init__(self, callback: TrackingCallback) -> None:
            self.callback = callback

        def fit(self) -> None:
            callback = self.callback
            trial = types.SimpleNamespace(trial_id="t_00000", config={"mu": 0.2}, last_result={})
            callback.on_trial_start(0, [trial], trial)
            callback.on_trial_result(0, [trial], trial, {"iteration": 100, "knn_accuracy": 0.5})
            raise RuntimeError("a callback failed")

    monkeypatch.setattr(
        search_module,
        "make_tuner",
        lambda spec, data, exp_dir, callback, *a, **k: RaisingTuner(callback),
    )
    monkeypatch.setattr(search_module, "baselines", lambda *a, **k: {})
    run = search_module.SearchRun(
        spec,
        "r",
        uri,
        experiment_dir(tmp_path / "ray", "r"),
        "r-1",
        False,
        "quiet",
        None,
        None,
        SetupClock(),
    )
    try:
        search_module.fit_tracked(run, _tiny_data(), tracker)
    except RuntimeError as err:
        assert str(err) == "a callback failed"
    else:
        raise AssertionError("fit_tracked swallowed Tune's error")
    runs = MlflowClient(uri).search_runs([tracker.experiment_id])
    assert sorted((r.data.tags["tuner.role"], r.info.status) for r in runs) == [
        ("search", "FAILED"),
        ("trial", "KILLED"),
    ]


def test_a_search_whose_only_complete_trial_diverged_selects_nothing_instead_of_crashing() -> None:
    # An infinite figure (a diverged model's recon_error) is invalid to the Objective, as on a
    # multi-objective front; when no valid configuration is left, nothing is selected (before the
    # fix: IndexError from indexing with the Objective's None).
    table = pd.DataFrame(
        {
            "trial_id": ["a", "b"],
            "lr": [0.1, 0.2],
            "status": ["FINISHED", "FINISHED"],
            "recon_error": [np.inf, np.inf],
            "knn_accuracy": [0.5, 0.6],
        }
    )
    assert selection(table, ["recon_error"], ["min"]) == []
    assert chosen(table, ["recon_error"], ["min"]) is None
    table.loc[1, "recon_error"] = 0.3  # a valid one is still chosen over the diverged one
    assert selection(table, ["recon_error"], ["min"]) == ["b"]
    assert chosen(table, ["recon_error"], ["min"])["trial_id"] == "b"


def test_pareto_mask_keeps_exactly_the_non_dominated_rows() -> None:
    # row 1 has the same accuracy and lower error
    values = np.array(
        [
            [0.9, 0.10],  # best accuracy
            [0.8, 0.05],  # best error
            [0.7, 0.20],  # worse than row 0 in both: dominated
            [0.9, 0.10],  # ties row 0: neither dominates the other
            [0.85, np.nan],  # unfinished: never on the front
            [0.8, 0.07],
        ]
    )
    assert pareto_mask(values, ("max", "min")).tolist() == [True, True, False, True, False, False]
    # Flipping the modes turns the front around: now low accuracy and high error win.
    assert pareto_mask(values, ("min", "max")).tolist() == [False, False, True, False, False, False]
