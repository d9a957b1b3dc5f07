"""The Python API: `tuner.search`'s keywords and errors, `tuner.load_spec`, and the result a
search returns, built here from a hand-made results table (no Ray: tests/e2e/test_search.py
checks the same fields on real searches against their MLflow runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tuner
from tests.spaces import write_space
from tuner.cli import main
from tuner.core.selection import TrialOutcome, results_table
from tuner.errors import TunerError
from tuner.runner.result import SearchResult, search_result
from tuner.space.spec import REPEAT_KEY, TrialRecord
from tuner.tracking.readback import SearchRuns

SPACE = """
    name: api
    search: grid
    repeats: 2
    fixed: {iterations: 30, eval_every: 10}
    params:
      mu: {grid: [0.2, 0.8]}
      hidden_dims: {grid: [[32], [64, 32]]}
    """


def api_space(tmp_path: Path) -> Path:
    return write_space(tmp_path / "api.yaml", SPACE)


def test_load_spec_is_exported_and_returns_the_resolved_spec(tmp_path: Path) -> None:
    from tuner.space.load import load_spec

    assert "load_spec" in tuner.__all__ and tuner.load_spec is load_spec
    assert tuner.SearchResult is SearchResult
    spec = tuner.load_spec(api_space(tmp_path), overrides={"iterations": 7}, max_concurrent=2)
    assert spec.base_config.iterations == 7 and spec.max_concurrent == 2
    assert spec.resolved()["fixed"]["iterations"] == 7  # the file says 30
    assert spec.n_trials == 8  # 2 mu x 2 hidden_dims x 2 repeats


def test_a_bad_override_gets_the_error_set_gets(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = api_space(tmp_path)
    with pytest.raises(TunerError) as raised:
        tuner.search(path, overrides={"iteratons": 5})
    assert "unknown key 'iteratons' (did you mean 'iterations'?)" in str(raised.value)
    assert main(["search", "--space", str(path), "--set", "iteratons=5"]) == 2
    assert capsys.readouterr().err == f"tuner search: error: {raised.value}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["api.yaml"]  # refused before Ray or MLflow


def test_overrides_is_a_mapping_and_trial_settings_are_not_keywords(tmp_path: Path) -> None:
    path = api_space(tmp_path)
    with pytest.raises(TunerError, match=r"overrides=\['iterations=5'\] is not valid: expected a"):
        tuner.search(path, overrides=["iterations=5"])
    with pytest.raises(TypeError, match="'iterations'"):  # before: any other keyword was a setting
        tuner.search(path, iterations=5)
    with pytest.raises(TunerError, match=r"pass them to tuner\.load_spec\(path, overrides="):
        tuner.search(tuner.load_spec(path), overrides={"iterations": 5})


def outcome(
    spec,
    trial_id: str,
    status: str,
    mu: float,
    dims: list[int],
    repeat: int,
    knn: float,
    recon: float,
) -> tuple[TrialOutcome, TrialRecord]:
    """A trial as the ledger holds it: the table's outcome and the record built as it started."""
    record = spec.record(trial_id, {"mu": mu, "hidden_dims": dims, REPEAT_KEY: repeat})
    figures = {"iteration": 30, "knn_accuracy": knn, "recon_error": recon}
    return TrialOutcome(trial_id, status, record.params, figures), record


def tabled(spec, trials: list[tuple[TrialOutcome, TrialRecord]]):
    """The results table of `trials` and their records by trial id, as the driver passes them."""
    table = results_table([o for o, _ in trials], [*spec.params, "seed"], spec.metric, spec.mode)
    return table, {r.trial_id: r for _, r in trials}


def test_the_result_names_the_chosen_trial_its_runs_and_the_registered_version(tmp_path) -> None:
    spec = tuner.load_spec(api_space(tmp_path))
    table, records = tabled(
        spec,
        [
            outcome(spec, "a0", "FINISHED", 0.8, [64, 32], 0, 0.90, 0.05),
            outcome(spec, "a1", "FINISHED", 0.8, [64, 32], 1, 0.80, 0.04),
            outcome(spec, "b0", "FINISHED", 0.2, [32], 0, 0.95, 0.03),  # mean 0.775: not chosen
            outcome(spec, "b1", "FINISHED", 0.2, [32], 1, 0.60, 0.06),
            outcome(spec, "c0", "FAILED", 0.2, [64, 32], 0, np.nan, np.nan),  # c is incomplete ...
            outcome(spec, "c1", "FINISHED", 0.2, [64, 32], 1, 0.99, 0.02),  # ... its best run aside
        ],
    )
    table["test_knn_accuracy"] = table["trial_id"].map({"a0": 0.88, "a1": 0.79})  # the selected
    runs = SearchRuns("parent", {t: f"run-{t}" for t in table["trial_id"]}, "models:/api/3")
    result = search_result(spec, table, records, "FINISHED", "api", "api-1", "/ray/api", runs)

    best = result.best_trial
    assert best.trial_id == "a0" and best.status == "FINISHED" and best.run_id == "run-a0"
    assert best.params == {"mu": 0.8, "hidden_dims": [64, 32], "seed": 0}  # the cell was JSON text
    assert best.config is records["a0"].config  # the record's, not rebuilt from the table
    assert best.config == spec.trial_config({"mu": 0.8, "hidden_dims": [64, 32], REPEAT_KEY: 0})
    assert best.metrics == {"knn_accuracy": 0.90, "recon_error": 0.05, "test_knn_accuracy": 0.88}
    assert [t.trial_id for t in result.best_trials] == ["a0", "a1"]  # the configuration's runs
    assert result.best_trials[1].config.seed == 1 and result.best_trials[1].params["seed"] == 1
    assert result.get_best_result() is best
    # By one metric over finished trials, as Ray's get_best_result: c's lucky run, not the choice.
    assert result.get_best_result("knn_accuracy").trial_id == "c1"
    assert result.get_best_result("recon_error").trial_id == "c1"
    assert result.get_best_result("test_knn_accuracy").trial_id == "a0"
    assert result.get_best_result("knn_accuracy", mode="min").trial_id == "b1"
    with pytest.raises(TunerError, match="'accuracy'.*expected one of knn_accuracy"):
        result.get_best_result("accuracy")
    assert (result.model_uri, result.model_version) == ("models:/api/3", 3)
    assert (result.parent_run_id, result.search_id, result.experiment) == ("parent", "api-1", "api")
    assert result.trials is table and result.run_ids["c0"] == "run-c0"
    assert "trials=" not in repr(result) and "best_trial=TrialResult(trial_id='a0'" in repr(result)


def test_a_search_that_chose_nothing_and_was_not_read_back(tmp_path: Path) -> None:
    spec = tuner.load_spec(api_space(tmp_path))
    table, records = tabled(spec, [outcome(spec, "a0", "KILLED", 0.8, [32], 0, 0.5, 0.1)])
    result = search_result(spec, table, records, "KILLED", "api", "api-1", "/ray/api", None)
    assert result.best_trial is None and result.best_trials == ()
    assert (result.parent_run_id, result.model_uri, result.model_version) == (None, None, None)
    with pytest.raises(RuntimeError, match="search api-1 \\(KILLED\\) chose no trial"):
        result.get_best_result()
    with pytest.raises(RuntimeError, match="no finished trial"):
        result.get_best_result("knn_accuracy")
