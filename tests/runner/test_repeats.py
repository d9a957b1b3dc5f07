"""Seeds: `repeats: N` runs each configuration N times with seeds seed+0..N-1; runs of one
configuration share a config_id, and ranking, selection and reports use their mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.spaces import spec_of
from tests.stores import empty_store
from tuner.core.selection import (
    TrialOutcome,
    config_id,
    config_summary,
    config_table,
    results_table,
)
from tuner.errors import TunerError
from tuner.runner.final_test import selected_trials
from tuner.space.spec import REPEAT_KEY, trial_config

# ------------------------------------------------------------------ search files (fast)


def test_repeats_multiply_trials_and_grid_random_get_a_seed_axis(tmp_path: Path) -> None:
    grid = spec_of(tmp_path, "repeats: 3\nparams:\n  mu: {grid: [0.2, 0.8]}\n")
    assert (grid.repeats, grid.n_trials, grid.n_configs) == (3, 6, 2)
    assert grid.param_space()[REPEAT_KEY] == {"grid_search": [0, 1, 2]}
    assert "3 per configuration (2 configurations x 3 seeds" in grid.describe()
    assert grid.resolved()["repeats"] == 3
    random = spec_of(
        tmp_path, "search: random\nsamples: 4\nrepeats: 2\nparams:\n  mu: {uniform: [0, 1]}\n"
    )
    assert random.n_trials == 8 and REPEAT_KEY in random.param_space()
    optuna = spec_of(
        tmp_path, "search: optuna\nsamples: 5\nrepeats: 2\nparams:\n  mu: {uniform: [0, 1]}\n"
    )
    # Ray's Repeater sets it
    assert optuna.n_trials == 10 and REPEAT_KEY not in optuna.param_space()
    one = spec_of(tmp_path, "params:\n  mu: {grid: [0.2, 0.8]}\n")
    assert one.repeats == 1 and "repeats" not in one.resolved()  # an older search still resumes


def test_the_repeat_index_is_a_seed_offset_and_leaves_the_config_id(tmp_path: Path) -> None:
    from ray.tune.search.repeater import TRIAL_INDEX

    assert REPEAT_KEY == TRIAL_INDEX  # the key Ray's Repeater writes into the config
    fixed = {"seed": 10, "iterations": 50}
    first, second = (
        trial_config(fixed, {"mu": 0.3, REPEAT_KEY: 0}),
        trial_config(fixed, {"mu": 0.3, REPEAT_KEY: 1}),
    )
    assert (first.seed, second.seed) == (10, 11)
    assert config_id(first.to_dict()) == config_id(second.to_dict())
    assert config_id(first.to_dict()) != config_id(first.replace(mu=0.4).to_dict())
    assert len(config_id(first.to_dict())) == 12


def test_random_search_repeats_share_the_sampled_values(tmp_path: Path) -> None:
    from ray.tune.search.variant_generator import generate_variants

    from tuner.runner.tune_setup import _searcher

    spec = spec_of(
        tmp_path,
        "search: random\nsamples: 1\nrepeats: 3\nparams:\n  mu: {uniform: [0, 1]}\n"
        "  lr: {loguniform: [1.0e-4, 1.0e-2]}\n",
    )
    assert _searcher(spec)._constant_grid_search  # what makes the seed axis reuse one draw
    variants = [
        cfg
        for _, cfg in generate_variants(
            {"config": spec.param_space()}, constant_grid_search=True, random_state=0
        )
    ]
    assert [v["config"][REPEAT_KEY] for v in variants] == [0, 1, 2]
    assert len({(v["config"]["mu"], v["config"]["lr"]) for v in variants}) == 1


def test_repeats_with_asha_or_repeater_with_several_metrics_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        TunerError, match=r"repeats: 3 seeds per configuration cannot run under scheduler: asha"
    ):
        spec_of(tmp_path, "repeats: 3\nscheduler: asha\nparams:\n  mu: {grid: [0.2, 0.8]}\n")
    with pytest.raises(TunerError, match=r"repeats: Ray's Repeater .* averages one metric"):
        spec_of(
            tmp_path,
            "search: optuna\nrepeats: 2\nmetric: [knn_accuracy, recon_error]\n"
            "params:\n  mu: {uniform: [0, 1]}\n",
        )
    with pytest.raises(TunerError, match=r"repeats: 0 is not valid: expected an integer >= 1"):
        spec_of(tmp_path, "repeats: 0\n")
    # a seed axis
    assert spec_of(tmp_path, "repeats: 2\nmetric: [knn_accuracy, recon_error]\n").repeats == 2


def test_cli_refuses_repeats_with_asha_with_exit_2(tmp_path: Path, capsys) -> None:
    from tuner.cli import main

    path = tmp_path / "s.yaml"
    path.write_text("repeats: 2\nscheduler: asha\nparams:\n  mu: {grid: [0.2, 0.8]}\n")
    assert main(["validate", "--space", str(path)]) == 2
    assert "early stopping would stop some seeds" in capsys.readouterr().err


# ------------------------------------------------------------------ aggregation (fast)


def _outcomes(values: dict[str, tuple[float, float, list[float]]]) -> list[TrialOutcome]:
    """{name: (mu, seed..., knn per seed)} -> one finished outcome per seed."""
    out = []
    for name, (mu, _, knns) in values.items():
        for seed, knn in enumerate(knns):
            cfg = trial_config({}, {"mu": mu, REPEAT_KEY: seed}).to_dict()
            out.append(
                TrialOutcome(
                    f"{name}{seed}",
                    "FINISHED",
                    cfg,
                    {"iteration": 1500, "knn_accuracy": knn, "recon_error": 0.1 * (1 + seed)},
                )
            )
    return out


def test_runs_rank_by_their_configurations_mean_not_by_a_lucky_seed() -> None:
    # b has the single best run (0.95) but the worse mean (0.80 vs 0.90).
    outcomes = _outcomes({"a": (0.2, 0, [0.91, 0.89]), "b": (0.8, 0, [0.65, 0.95])})
    table = results_table(outcomes, ["mu", "seed"], ["knn_accuracy"], ["max"])
    assert list(table["trial_id"]) == ["a0", "a1", "b1", "b0"]
    assert table["config_id"].nunique() == 2 and list(table["seed"]) == [0, 1, 1, 0]
    configs = config_table(table, ["knn_accuracy"], ["max"], ["mu"])
    assert list(configs["mu"]) == [0.2, 0.8] and list(configs["runs"]) == [2, 2]
    assert configs["knn_accuracy_mean"].tolist() == pytest.approx([0.90, 0.80])
    assert configs["knn_accuracy_std"].tolist() == pytest.approx(
        [np.std([0.91, 0.89], ddof=1), np.std([0.65, 0.95], ddof=1)]
    )
    assert configs["recon_error_mean"].tolist() == pytest.approx([0.15, 0.15])


def test_the_summary_of_configurations_shows_their_values_counts_and_stats_but_no_seed() -> None:
    outcomes = _outcomes({"a": (0.2, 0, [0.91, 0.89]), "b": (0.8, 0, [0.65, 0.95])})
    table = results_table(outcomes, ["mu", "seed"], ["knn_accuracy"], ["max"])
    shown = config_summary(table, ["knn_accuracy"], ["max"], ["mu", "seed"])
    assert list(shown.columns) == [
        "config_id",
        "mu",
        "runs",
        "finished",
        "knn_accuracy_mean",
        "knn_accuracy_std",
        "recon_error_mean",
        "recon_error_std",
    ]
    assert list(shown["mu"]) == [0.2, 0.8] and shown["knn_accuracy_mean"].tolist() == pytest.approx(
        [0.90, 0.80]
    )


def test_one_run_per_configuration_ranks_as_before_with_no_std() -> None:
    outcomes = _outcomes({"a": (0.2, 0, [0.7]), "b": (0.5, 0, [0.9]), "c": (0.8, 0, [0.8])})
    table = results_table(outcomes, ["mu"], ["knn_accuracy"], ["max"])
    assert list(table["trial_id"]) == ["b0", "c0", "a0"]
    assert config_table(table, ["knn_accuracy"], ["max"])["knn_accuracy_std"].isna().all()


def test_selection_takes_every_run_of_the_best_complete_configuration(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, "repeats: 2\nparams:\n  mu: {grid: [0.2, 0.5, 0.8]}\n")
    outcomes = _outcomes(
        {"a": (0.2, 0, [0.91, 0.89]), "b": (0.8, 0, [0.65, 0.95]), "c": (0.5, 0, [0.99, 0.99])}
    )
    outcomes[-1] = TrialOutcome("c1", "FAILED", outcomes[-1].config, outcomes[-1].last_result)
    table = results_table(outcomes, ["mu", "seed"], ["knn_accuracy"], ["max"])
    assert selected_trials(spec, table) == [
        "a0",
        "a1",
    ]  # c's mean is best, but one of its seeds failed
    multi = spec_of(
        tmp_path,
        "repeats: 2\nmetric: [knn_accuracy, recon_error]\nparams:\n  mu: {grid: [0.2, 0.8]}\n",
    )
    table = results_table(outcomes[:4], ["mu", "seed"], multi.metric, multi.mode)
    assert table["pareto"].tolist() == [
        True,
        True,
        False,
        False,
    ]  # equal recon means: a dominates b
    assert selected_trials(multi, table) == ["a0", "a1"]


def test_config_table_means_finished_runs_and_counts_them() -> None:
    table = pd.DataFrame(
        {
            "trial_id": ["x", "y", "z"],
            "status": ["FINISHED", "FAILED", "FINISHED"],
            "config_id": ["c", "c", "d"],
            "knn_accuracy": [0.8, 0.1, 0.7],
            "test_knn_accuracy": [0.79, np.nan, np.nan],
        }
    )
    configs = config_table(table, ["knn_accuracy"], ["max"]).set_index("config_id")
    assert configs.loc["c", "knn_accuracy_mean"] == pytest.approx(0.8)  # the failed run is left out
    assert (configs.loc["c", "runs"], configs.loc["c", "finished"]) == (2, 1)
    assert configs.loc["c", "test_knn_accuracy_mean"] == pytest.approx(0.79)
    assert configs.loc["c", "trial_ids"] == ["x", "y"]


# ------------------------------------------------------------------ a real search (slow)


TINY = "hidden_dims: [32], batch_size: 40, knn_k: 3, iterations: 40, eval_every: 20"


@pytest.mark.slow
@pytest.mark.parametrize("search", ["grid", "optuna"])
def test_repeats_2_gives_two_seeded_runs_per_configuration_and_a_mean(
    local_ray, tmp_path: Path, search: str, capsys
) -> None:
    from mlflow import MlflowClient

    from tuner.runner.search import run_search
    from tuner.tracking.reader import print_report, trials_table

    params = "mu: {grid: [0.2, 0.8]}" if search == "grid" else "mu: {uniform: [0.1, 0.9]}"
    spec = spec_of(
        tmp_path,
        f"""
        name: rep-{search}
        search: {search}
        samples: {1 if search == "grid" else 2}
        repeats: 2
        max_concurrent: 1            # one trial worker for the four trials
        log_models: none
        fixed: {{{TINY}, seed: 5}}
        params:
          {params}
        """,
    )
    uri = empty_store(tmp_path)
    table = run_search(spec, tracking_uri=uri, storage_path=tmp_path / "ray", verbose=False).trials
    assert len(table) == 4 and set(table["status"]) == {"FINISHED"}
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(f"rep-{search}")
    runs = [
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("tuner.role") == "trial"
    ]
    groups: dict[str, list] = {}
    for run in runs:
        groups.setdefault(run.data.tags["tuner.config_id"], []).append(run)
    assert sorted(len(g) for g in groups.values()) == [2, 2]
    for group in groups.values():
        assert sorted(int(r.data.params["seed"]) for r in group) == [5, 6]  # seed + repeat index
        assert len({r.data.params["mu"] for r in group}) == 1
        assert (
            group[0].data.metrics["knn_accuracy"] != group[1].data.metrics["knn_accuracy"]
            or group[0].data.metrics["recon_error"] != group[1].data.metrics["recon_error"]
        )
    # The best configuration's two runs were both read on test.
    best = table["config_id"].iloc[0]
    assert table[table["config_id"] == best]["test_knn_accuracy"].notna().all()
    assert table[table["config_id"] != best]["test_knn_accuracy"].isna().all()

    report = trials_table(uri, f"rep-{search}")
    configs = config_table(report, ["knn_accuracy"], ["max"])
    mean = np.mean([r.data.metrics["knn_accuracy"] for r in groups[configs["config_id"].iloc[0]]])
    assert configs["knn_accuracy_mean"].iloc[0] == pytest.approx(mean)
    assert configs["knn_accuracy_mean"].is_monotonic_decreasing
    print_report(uri, f"rep-{search}", None)
    out = capsys.readouterr().out
    assert "per configuration, mean and standard deviation over its seeds (2 configurations)" in out
    assert "knn_accuracy_mean" in out and "knn_accuracy_std" in out


def test_the_repeater_state_survives_save_and_restore(tmp_path: Path) -> None:
    """--resume rebuilds the searcher from its saved file: the groups must come back with it."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from tuner.runner.tune_setup import ResumableRepeater

    def repeater() -> ResumableRepeater:
        searcher = OptunaSearch(space={"mu": tune.uniform(0, 1)}, metric="knn_accuracy", mode="max")
        return ResumableRepeater(searcher, repeat=2)

    before = repeater()
    first, second = before.suggest("t1"), before.suggest("t2")
    assert first["mu"] == second["mu"] and (first[REPEAT_KEY], second[REPEAT_KEY]) == (0, 1)
    before.save(str(tmp_path / "state.pkl"))
    after = repeater()
    after.restore(str(tmp_path / "state.pkl"))
    after.on_trial_complete("t1", {"knn_accuracy": 0.8})  # Ray's Repeater: KeyError here
    after.on_trial_complete("t2", {"knn_accuracy": 0.6})
    trial = after.searcher._ot_study.trials[0]
    assert trial.value == pytest.approx(0.7)  # TPE was told the mean
    assert after.suggest("t3")[REPEAT_KEY] == 0  # a new configuration starts a new group
