"""`require:` in a search file: bounds the chosen (best, registered) trial must meet on
validation, such as {recon_error: 0.045} beside metric: knn_accuracy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.spaces import spec_of
from tuner.core.selection import (
    TrialOutcome,
    chosen,
    meets,
    parse_require,
    require_text,
    results_table,
)
from tuner.errors import TunerError
from tuner.runner.final_test import selected_trials
from tuner.runner.models_step import best_of
from tuner.space.spec import REPEAT_KEY, trial_config
from tuner.tracking.note import search_note
from tuner.tracking.tags import REQUIRE as REQUIRE_TAG


def outcomes(rows: dict[str, tuple[float, int, float, float]]) -> list[TrialOutcome]:
    """{trial id: (mu, repeat index, knn_accuracy, recon_error)} -> finished outcomes."""
    return [
        TrialOutcome(
            tid,
            "FINISHED",
            trial_config({}, {"mu": mu, REPEAT_KEY: rep}).to_dict(),
            {"iteration": 1500, "knn_accuracy": knn, "recon_error": recon},
        )
        for tid, (mu, rep, knn, recon) in rows.items()
    ]


TABLE = pd.DataFrame(
    {
        "trial_id": ["a", "b", "c", "d"],
        "knn_accuracy": [0.99, 0.97, 0.95, None],
        "recon_error": [0.050, 0.044, 0.040, 0.030],
    }
)


def test_bounds_follow_each_metrics_direction_and_a_missing_value_fails() -> None:
    assert meets(TABLE, {"recon_error": 0.045}).tolist() == [False, True, True, True]
    assert meets(TABLE, {"knn_accuracy": 0.96}).tolist() == [True, True, False, False]
    assert meets(TABLE, {"recon_error": 0.045, "knn_accuracy": 0.96}).tolist() == [
        False,
        True,
        False,
        False,
    ]
    # a column nobody reported
    assert meets(TABLE, {"trustworthiness": 0.5}).tolist() == [False] * 4


def test_the_chosen_row_is_the_best_within_the_bounds() -> None:
    assert chosen(TABLE, ["knn_accuracy"], ["max"])["trial_id"] == "a"
    assert chosen(TABLE, ["knn_accuracy"], ["max"], {"recon_error": 0.045})["trial_id"] == "b"
    assert chosen(TABLE, ["knn_accuracy"], ["max"], {"recon_error": 0.01}) is None


def test_the_tag_text_round_trips() -> None:
    require = {"recon_error": 0.045, "knn_accuracy": 0.9}
    assert require_text(require) == "recon_error<=0.045,knn_accuracy>=0.9"
    assert parse_require(require_text(require)) == require
    assert parse_require(None) == {} and parse_require("unknown_metric<=1") == {}


def test_a_search_file_states_its_bounds_and_bad_ones_are_refused(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, "require: {recon_error: 0.045}\nparams:\n  mu: {grid: [0.2, 0.8]}\n")
    assert spec.require == {"recon_error": 0.045}
    assert any(
        line.split()
        == ["require", "recon_error<=0.045", "on", "validation,", "for", "the", "chosen", "trial"]
        for line in spec.describe().splitlines()
    )
    assert spec_of(tmp_path, "params:\n  mu: {grid: [0.2]}\n").require == {}
    for body, expected in (
        ("require: {recon_eror: 0.1}", "did you mean 'recon_error'"),
        ("require: {recon_error: high}", "expected a number (the largest recon_error"),
        ("require: 0.045", "expected metric: bound pairs"),
    ):
        with pytest.raises(TunerError, match="require") as info:
            spec_of(tmp_path, body + "\n")
        assert expected in str(info.value) and "s.yaml:1" in str(info.value)


def test_a_single_objective_selects_the_best_within_the_bounds(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path, "require: {recon_error: 0.045}\nparams:\n  mu: {grid: [0.2, 0.5, 0.8]}\n"
    )
    table = results_table(
        outcomes(
            {"x": (0.8, 0, 0.99, 0.05), "y": (0.5, 0, 0.97, 0.044), "z": (0.2, 0, 0.95, 0.04)}
        ),
        ["mu"],
        spec.metric,
        spec.mode,
    )
    assert selected_trials(spec, table) == ["y"]
    assert best_of(spec, table, ["x", "y", "z"]) == "y"
    bare = spec_of(tmp_path, "params:\n  mu: {grid: [0.2, 0.5, 0.8]}\n")
    assert selected_trials(bare, table) == ["x"]


def test_repeats_bound_the_configurations_mean_and_register_a_run_within(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path, "repeats: 2\nrequire: {recon_error: 0.045}\nparams:\n  mu: {grid: [0.3, 0.4]}\n"
    )
    # mu 0.4: the best knn mean but a recon mean of 0.046; mu 0.3: mean 0.0445, one run at 0.046.
    table = results_table(
        outcomes(
            {
                "a0": (0.4, 0, 0.98, 0.046),
                "a1": (0.4, 1, 0.98, 0.046),
                "b0": (0.3, 0, 0.97, 0.043),
                "b1": (0.3, 1, 0.975, 0.046),
            }
        ),
        ["mu", "seed"],
        spec.metric,
        spec.mode,
    )
    assert sorted(selected_trials(spec, table)) == ["b0", "b1"]
    assert best_of(spec, table, ["b0", "b1"]) == "b0"  # the run registered meets the bound itself


def test_a_front_is_read_whole_and_the_chosen_trial_meets_the_bounds(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        "metric: [knn_accuracy, recon_error]\nrequire: {recon_error: 0.045}\n"
        "params:\n  mu: {grid: [0.2, 0.5, 0.8]}\n",
    )
    table = results_table(
        outcomes(
            {"x": (0.8, 0, 0.99, 0.05), "y": (0.5, 0, 0.97, 0.044), "z": (0.2, 0, 0.95, 0.04)}
        ),
        ["mu"],
        spec.metric,
        spec.mode,
    )
    assert sorted(selected_trials(spec, table)) == ["x", "y", "z"]
    assert best_of(spec, table, ["x", "y", "z"]) == "y"
    note = search_note(
        {}, {REQUIRE_TAG: require_text(spec.require)}, table, list(spec.metric), list(spec.mode)
    )
    assert "Best trial: `y` (knn_accuracy, max; within recon_error<=0.045)" in note
