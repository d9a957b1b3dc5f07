"""Which settings matter: Optuna's fANOVA over a results table, and the report page that shows
it."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd

from tests.stores import empty_store
from tuner.core.importance import MIN_TRIALS, param_importances, plot_importances
from tuner.core.selection import pareto_mask
from tuner.tracking.report_html import front_figure, report_page


def synthetic(n: int, seed: int = 0) -> pd.DataFrame:
    """Trials of a grid where only mu moves knn_accuracy (latent_dim and constraint are noise)."""
    rng = np.random.default_rng(seed)
    rows = [
        {
            "trial_id": f"t{i}",
            "status": "FINISHED",
            "mu": float(rng.choice([0.1, 0.5, 0.9])),
            "latent_dim": int(rng.choice([2, 8, 32])),
            "constraint": str(rng.choice(["pairwise", "triplet"])),
        }
        for i in range(n)
    ]
    table = pd.DataFrame(rows)
    table["knn_accuracy"] = 0.5 + 0.4 * table["mu"] + rng.normal(0, 0.005, n)
    table["recon_error"] = 0.1 + 0.05 * np.log2(table["latent_dim"]) + rng.normal(0, 0.001, n)
    return table


def test_the_only_setting_that_moves_a_metric_gets_most_of_its_variance(tmp_path) -> None:
    imp = param_importances(
        synthetic(30), ["mu", "latent_dim", "constraint"], ["knn_accuracy", "recon_error"]
    )
    assert list(imp.shares["knn_accuracy"])[0] == "mu" and imp.shares["knn_accuracy"]["mu"] > 0.9
    assert (
        list(imp.shares["recon_error"])[0] == "latent_dim"
        and imp.shares["recon_error"]["latent_dim"] > 0.9
    )
    assert abs(sum(imp.shares["knn_accuracy"].values()) - 1) < 1e-9
    lines = imp.lines()
    assert lines[0].startswith("which searched settings matter (fANOVA over 30 finished trials")
    assert lines[1] == f"  mu: {imp.shares['knn_accuracy']['mu']:.2f} of knn_accuracy's variance"
    assert set(imp.metrics()) == {
        f"importance_{m}_{s}"
        for m in ("knn_accuracy", "recon_error")
        for s in ("mu", "latent_dim", "constraint")
    }
    assert plot_importances(imp, tmp_path / "importance.png").read_bytes().startswith(b"\x89PNG")


def test_the_order_of_the_rows_does_not_change_the_shares() -> None:
    # The search ranks its table one way, `tuner report` reads it back another: both print the same.
    table = synthetic(20)
    shares = [
        param_importances(t, ["mu", "latent_dim", "constraint"], ["recon_error"]).shares
        for t in (table, table.sample(frac=1, random_state=1), table.iloc[::-1])
    ]
    assert shares[0] == shares[1] == shares[2]


def test_only_finished_trials_count() -> None:
    table = synthetic(30)
    table.loc[:25, "status"] = "KILLED"  # 4 left: the least fANOVA is asked to read
    assert param_importances(table, ["mu"], ["knn_accuracy"]).trials == 4


def test_too_few_finished_trials_give_a_message_not_a_traceback(tmp_path) -> None:
    for n in (0, 1, MIN_TRIALS - 1):
        imp = param_importances(
            synthetic(n) if n else synthetic(3).iloc[:0], ["mu", "latent_dim"], ["knn_accuracy"]
        )
        assert imp.shares == {} and imp.metrics() == {}
        assert imp.lines() == [imp.message] and f"{n} finished trial(s) are too few" in imp.message
        assert plot_importances(imp, tmp_path / "none.png") is None
    same = synthetic(10).assign(mu=0.5)  # nothing varied: nothing to tell apart
    assert "too few" in param_importances(same, ["mu"], ["knn_accuracy"]).message


def test_the_report_page_is_self_contained_and_its_front_is_the_pareto_front() -> None:
    table = synthetic(12).sort_values("knn_accuracy", ascending=False)
    table.loc[table.index[-1], "status"] = "FAILED"
    imp = param_importances(table, ["mu", "latent_dim"], ["knn_accuracy", "recon_error"])
    names = {t: f"run of {t}" for t in table["trial_id"]}
    page = report_page(
        "search s1",
        table,
        ["knn_accuracy", "recon_error"],
        ["max", "min"],
        ["mu", "latent_dim"],
        imp,
        names,
        {"an image": b"\x89PNG fake"},
    )
    assert not re.search(r"<script[^>]+src=", page)  # plotly's JS inline: opens offline
    assert page.count("<script>/**\n* plotly.js v") == 1  # inline, once, not per figure
    done = table[table["status"] == "FINISHED"]
    front = done[pareto_mask(done[["knn_accuracy", "recon_error"]].to_numpy(), ["max", "min"])]
    assert f": {len(front)} trials on the front" in page
    fig = front_figure(
        table, ["knn_accuracy", "recon_error"], ["max", "min"], ["mu", "latent_dim"], names
    )
    others, on_front = fig.data
    assert on_front.name == "front" and sorted(on_front.y) == sorted(front["knn_accuracy"])
    assert len(others.x) == len(done) - len(front)  # the failed trial is on neither
    best = done.iloc[
        0
    ]  # the best knn_accuracy is on the front; hovering it shows its run and settings
    assert (
        f"<b>run of {best.trial_id}</b><br>trial {best.trial_id}<br>mu = {best.mu}<br>latent_dim = "
        f"{best.latent_dim}" in on_front.text
    )
    assert html.escape(imp.lines()[1]) in page and "data:image/png;base64," in page


def test_a_metric_that_never_moves_is_said_not_a_traceback() -> None:
    # fANOVA raises on zero variance; a search whose trials all score alike must still end (and be
    # reported).
    table = synthetic(12).assign(knn_accuracy=1.0)
    imp = param_importances(table, ["mu", "latent_dim"], ["knn_accuracy", "recon_error"])
    assert "knn_accuracy" not in imp.shares and list(imp.shares["recon_error"])[0] == "latent_dim"
    assert any("knn_accuracy" in line and "same value" in line for line in imp.lines())
    assert not any(k.startswith("importance_knn_accuracy_") for k in imp.metrics())


def test_a_metric_missing_from_some_trials_leaves_the_other_metrics_their_trials() -> None:
    table = synthetic(12)
    table["recon_error"] = np.nan  # e.g. not computed by these trials
    table.loc[0, "knn_accuracy"] = np.inf  # a diverged trial: out of knn_accuracy's table only
    imp = param_importances(table, ["mu", "latent_dim"], ["knn_accuracy", "recon_error"])
    assert list(imp.shares) == ["knn_accuracy"] and list(imp.shares["knn_accuracy"])[0] == "mu"
    assert abs(sum(imp.shares["knn_accuracy"].values()) - 1) < 1e-9
    assert imp.trials == 11
    assert any("recon_error" in line and "0 finished trial(s)" in line for line in imp.lines())


def _store_with_repeats(tmp_path, tag_searched: bool) -> str:
    """A search's runs as tuner writes them: 3 mu x 2 latent_dim, each configuration run with 2
    seeds."""
    from mlflow import MlflowClient

    from tuner.tracking import runs

    uri = empty_store(tmp_path, "m.db")
    client = MlflowClient(uri)
    exp = client.create_experiment("rep")
    tags = {**runs.parent_tags("s1"), "tuner.metric": "knn_accuracy", "tuner.mode": "max"}
    parent = client.create_run(
        exp, tags={**tags, **({"tuner.searched": "mu,latent_dim"} if tag_searched else {})}
    )
    rng = np.random.default_rng(0)
    i = 0
    for mu in (0.1, 0.5, 0.9):
        for latent_dim in (2, 8):
            for seed in (0, 1):
                run = client.create_run(
                    exp, tags=runs.trial_tags(parent.info.run_id, "s1", f"t{i}")
                )
                client.log_param(run.info.run_id, "mu", mu)
                client.log_param(run.info.run_id, "latent_dim", latent_dim)
                client.log_param(run.info.run_id, "seed", seed)
                client.log_metric(
                    run.info.run_id, "knn_accuracy", 0.5 + 0.4 * mu + rng.normal(0, 0.01)
                )
                client.log_metric(
                    run.info.run_id, "recon_error", 0.1 + 0.01 * latent_dim + rng.normal(0, 0.001)
                )
                client.set_terminated(run.info.run_id, "FINISHED")
                i += 1
    client.set_terminated(parent.info.run_id, "FINISHED")
    return uri


def test_tuner_report_weighs_the_searched_settings_not_the_repeats_seed(tmp_path, capsys) -> None:
    # The search's summary weighs its searched settings; `tuner report` (and its --html page) must
    # say the same, not count the seed of `repeats` as a setting that matters.
    from tuner.tracking.reader import print_report

    uri = _store_with_repeats(tmp_path, tag_searched=True)
    print_report(uri, "rep", None, tmp_path / "r.html")
    out = capsys.readouterr().out
    lines = out[out.index("which searched settings matter") :].splitlines()
    assert any(line.startswith("  mu: ") for line in lines)
    assert not any(line.startswith("  seed: ") for line in lines)
    assert (
        "seed: "
        not in html.unescape((tmp_path / "r.html").read_text()).split("Which settings matter")[1]
    )


def test_the_report_front_of_a_three_metric_search_is_the_searchs_front_not_the_plotted_pair() -> (
    None
):
    # A trial beaten on the plotted pair but best on the third metric is on the search's front (the
    # summary's `pareto` column): the page must not paint it as off the front, nor count it out.
    table = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "status": ["FINISHED"] * 3,
            "mu": [0.1, 0.5, 0.9],
            "knn_accuracy": [0.9, 0.5, 0.4],
            "recon_error": [0.1, 0.2, 0.3],
            "ami": [0.1, 0.05, 0.9],
        }
    )
    metrics, modes = ["knn_accuracy", "recon_error", "ami"], ["max", "min", "max"]
    table["pareto"] = pareto_mask(table[metrics].to_numpy(float), modes)
    assert table["pareto"].tolist() == [True, False, True]
    fig = front_figure(table, metrics, modes, ["mu"], {})
    others, on_front = fig.data
    assert sorted(on_front.y) == [0.4, 0.9] and list(others.y) == [0.5]
    assert ": 2 trials on the front" in fig.layout.title.text
