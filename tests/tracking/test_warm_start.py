"""Warm start: an earlier search's finished trials told to Optuna before its first proposal.

Fast: which earlier trials fit a space (pure), the searcher built with them, the CLI's refusals.
Slow: a real optuna search on digits, then a second one warm-started from it (real Ray and MLflow).
"""

from __future__ import annotations

import pickle
import re
import textwrap
from pathlib import Path

import pytest

import tuner
from tests.spaces import write_space
from tests.stores import empty_store
from tuner.core.params import to_text
from tuner.space.load import load_spec
from tuner.tracking.warm_start import WarmStart, select

SPACE = """
    name: {name}
    search: {search}
    samples: {samples}
    seed: {seed}
    fixed: {{hidden_dims: [32], batch_size: 40, knn_k: 3, iterations: 20, eval_every: 20}}
    params:
      mu: {{uniform: [0.1, 0.9]}}
      latent_dim: {{randint: [{low}, {high}]}}
    """


def mu_latent_space(
    path: Path,
    name: str,
    *,
    search: str = "optuna",
    samples: int = 2,
    seed: int = 0,
    low: int = 1,
    high: int = 6,
    extra: str = "",
) -> Path:
    return write_space(
        path,
        textwrap.dedent(
            SPACE.format(name=name, search=search, samples=samples, seed=seed, low=low, high=high)
        )
        + extra,
    )


def logged(spec, **searched) -> dict[str, str]:
    """A trial run's params as the tracker writes them: the whole TrialConfig, as text."""
    return {k: to_text(v) for k, v in spec.trial_config(searched).to_dict().items()}


def test_only_finished_trials_this_space_could_run_are_kept(tmp_path: Path) -> None:
    spec = load_spec(mu_latent_space(tmp_path / "s.yaml", "s", low=2, high=4))
    other = load_spec(mu_latent_space(tmp_path / "o.yaml", "o"), overrides={"margin": 2.0})
    trials = [
        ("FINISHED", logged(spec, mu=0.5, latent_dim=3), {"knn_accuracy": 0.8}),
        ("FINISHED", logged(spec, mu=0.25, latent_dim=4), {"knn_accuracy": 0.9}),
        ("FINISHED", logged(spec, mu=0.5, latent_dim=6), {"knn_accuracy": 0.95}),  # d above 4
        ("FINISHED", logged(spec, mu=0.95, latent_dim=3), {"knn_accuracy": 0.7}),  # mu above 0.9
        ("FINISHED", logged(other, mu=0.5, latent_dim=3), {"knn_accuracy": 0.99}),  # another margin
        ("KILLED", logged(spec, mu=0.5, latent_dim=2), {"knn_accuracy": 0.5}),
        ("FINISHED", logged(spec, mu=0.5, latent_dim=2), {"recon_error": 0.1}),  # no knn_accuracy
    ]
    warm = select(spec, "s-1", trials)
    assert warm.points == [{"mu": 0.5, "latent_dim": 3}, {"mu": 0.25, "latent_dim": 4}]
    assert warm.rewards == [0.8, 0.9]
    assert (warm.outside, warm.other_settings, warm.unfinished) == (2, 1, 2)
    assert warm.summary().startswith(
        "warm start: 2 earlier trials given to Optuna, 2 outside this space skipped"
    )
    # A default is a setting too: an earlier search that fixed margin=2 trained other models.
    assert select(other, "s-1", trials[:2]).other_settings == 2
    # In a finished search under ASHA, a KILLED trial was stopped by it: Optuna hears of it as
    # pruned.
    asha = select(spec, "s-1", trials, stopped_by_asha=True)
    assert (
        asha.stopped == [({"mu": 0.5, "latent_dim": 2}, 0.5)]
        and asha.unfinished == 1
        and asha.used == 3
    )
    assert (
        "3 earlier trials given to Optuna (1 of them stopped by ASHA, as pruned)" in asha.summary()
    )


@pytest.mark.parametrize("objectives", [1, 2])
def test_optuna_holds_the_earlier_trials_before_its_first_proposal(
    tmp_path: Path, objectives: int
) -> None:
    from tuner.runner.tune_setup import _searcher

    both = "metric: [knn_accuracy, recon_error]\nmode: [max, min]\n"
    spec = load_spec(
        mu_latent_space(tmp_path / "s.yaml", "s", extra=both if objectives == 2 else "")
    )
    rewards = [[0.5 + i / 100, 1.0 - i / 100][:objectives] for i in range(12)]
    warm = WarmStart(
        "s-1",
        [{"mu": 0.1 + i / 20, "latent_dim": 1 + i % 6} for i in range(12)],
        [r[0] if objectives == 1 else r for r in rewards],
        [({"mu": 0.9, "latent_dim": 6}, 0.99)],
    )
    searcher = _searcher(spec, warm)
    metric, mode = (None, None) if objectives == 2 else ("knn_accuracy", "max")
    # what Tune does before the first trial
    searcher.set_search_properties(metric, mode, spec.param_space())
    study = searcher._ot_study
    assert [t.params for t in study.trials] == warm.points + [{"mu": 0.9, "latent_dim": 6}]
    assert [t.values for t in study.trials[:12]] == rewards
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 12 + ["PRUNED"]
    # a pruned trial's last value is no result: the best stays the best complete one
    if objectives == 1:
        assert study.best_value == pytest.approx(0.61) and study.trials[12].intermediate_values == {
            0: 0.99
        }
    first = searcher.suggest("new_00000")
    assert 0.1 <= first["mu"] <= 0.9 and len(study.trials) == 14


def test_grid_refuses_a_warm_start_and_an_unknown_source_exits_2(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    # In this process: each refusal comes before Ray or MLflow start (commands/test_search.py runs
    # the CLI as a process of its own and checks its stderr holds the one-line error, no traceback).
    from tuner.cli import main

    monkeypatch.chdir(tmp_path)

    def refused(*args: str) -> str:
        assert main(list(args)) == 2
        return capsys.readouterr().err

    grid = tmp_path / "g.yaml"
    grid.write_text(
        "name: g\nsearch: grid\nfixed: {iterations: 20}\nparams:\n  mu: {grid: [0.1, 0.9]}\n"
    )
    err = refused("search", "--space", str(grid), "--warm-start", "g")
    assert "--resume" in err and "search: optuna" in err, err
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    space = mu_latent_space(tmp_path / "s.yaml", "s")
    err = refused("search", "--space", str(space), "--warm-start", "nope", "--tracking-uri", uri)
    assert f"--warm-start nope: no MLflow store at '{tmp_path}/mlflow.db'" in err, err
    assert not (tmp_path / "mlflow.db").exists()  # a refused warm start creates no store
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    for source in ("nosuch-experiment", "0123456789abcdef0123456789abcdef"):
        err = refused(
            "search", "--space", str(space), "--warm-start", source, "--tracking-uri", uri
        )
        assert f"--warm-start {source!r}: no experiment" in err, err
    assert not (tmp_path / "ray_results").exists()  # refused before Ray or any run


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_a_warm_started_search_starts_from_the_earlier_trials_and_describes_itself(
    local_ray, tmp_path: Path, capsys
) -> None:
    from mlflow import MlflowClient

    uri, ray_dir = empty_store(tmp_path), tmp_path / "ray"
    # TPE proposes at random until its study holds 10 finished trials: the earlier search gives 10.
    # One trial at a time (one trial worker, not one per core), and no model for the earlier
    # search: what is checked is what Optuna is told and what the second search logs.
    first = tuner.search(
        mu_latent_space(tmp_path / "a.yaml", "warm-a", samples=10, extra="log_models: none\n"),
        max_concurrent=1,
        tracking_uri=uri,
        storage_path=ray_dir,
        verbose=False,
    ).trials
    assert (first["status"] == "FINISHED").all() and len(first) == 10
    inside = first[first["latent_dim"] <= 3]
    assert 0 < len(inside) < 10  # the narrower space below keeps some and skips some

    narrow = mu_latent_space(tmp_path / "b.yaml", "warm-b", samples=2, seed=1, high=3)
    second = tuner.search(
        narrow, max_concurrent=1, tracking_uri=uri, storage_path=ray_dir, warm_start="warm-a"
    ).trials
    said = capsys.readouterr().out
    assert (
        f"warm start: {len(inside)} earlier trials given to Optuna, {10 - len(inside)} outside "
        "this space skipped" in said
    )
    assert len(second) == 2 and (second["latent_dim"] <= 3).all()

    client = MlflowClient(tracking_uri=uri)
    source = client.search_runs(
        [client.get_experiment_by_name("warm-a").experiment_id], "tags.`tuner.role` = 'search'"
    )[0]
    parent = client.search_runs(
        [client.get_experiment_by_name("warm-b").experiment_id], "tags.`tuner.role` = 'search'"
    )[0]
    assert parent.data.tags["tuner.warm_start"] == source.data.tags["tuner.search_id"]
    assert parent.data.params["warm_start_used"] == str(len(inside))
    assert parent.data.params["warm_start_skipped"] == str(10 - len(inside))

    # Tune's saved searcher: the earlier trials came first in Optuna's study, then the two new ones.
    state = sorted((ray_dir / "warm-b").glob("searcher-state-*.pkl"))[-1]
    study = pickle.loads(state.read_bytes())["_ot_study"]
    old = sorted(zip(inside["mu"], inside["latent_dim"], inside["knn_accuracy"]))
    assert (
        sorted(
            (t.params["mu"], t.params["latent_dim"], t.value) for t in study.trials[: len(inside)]
        )
        == old
    )
    assert len(study.trials) == len(inside) + 2
    # trial 1 was asked with the old ones in place
    assert study.trials[len(inside)].number == len(inside)
    assert study.best_value >= inside["knn_accuracy"].max()

    # Its runs are named by their values, and its parent describes the search.
    runs = client.search_runs([client.get_experiment_by_name("warm-b").experiment_id])
    for _, row in second.iterrows():
        run = next(r for r in runs if r.data.tags.get("tuner.trial_id") == row["trial_id"])
        assert run.info.run_name == f"pairwise ae mu={row['mu']:.3g} d={row['latent_dim']}"
    note = parent.data.tags["mlflow.note.content"]
    assert f"`{narrow}`" in note
    assert f"### Best trial: `{second.iloc[0]['trial_id']}`" in note
    assert re.search(r"### Pareto front \(recon_error ↓, knn_accuracy ↑\): [12] trials", note)
    assert "### Registered model\n`models:/warm-b/1` (alias `champion`: version 1)" in note
