"""One `scheduler: moasha` search through the CLI (its own process, its own Ray, SQLite MLflow),
SIGKILLed mid-way and resumed: the trials it stopped, their MLflow statuses and histories, the
rungs it kept across the kill, the front, and `tuner report`'s order and stopped trials, checked by
value."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest

from tests.drivers import search_args
from tests.spaces import write_space
from tests.stores import empty_store
from tuner.core.objective import Objective
from tuner.core.selection import pareto_mask, rank_by_config
from tuner.runner.moasha import latest_book
from tuner.system.tune_storage import ExperimentDir

# 160 iterations: six trials in a row outlast the wait for three at the rungs, on any machine.
ITERATIONS = 160
TINY = (
    f"hidden_dims: [32], batch_size: 40, knn_k: 3, iterations: {ITERATIONS}, eval_every: 20, "
    "constraint: triplet"
)


def read_book(path: Path) -> dict | None:
    """The rungs a resumed search would read back (the newest of the drivers' files)."""
    newest = latest_book(ExperimentDir(str(path), pafs.LocalFileSystem(), str(path)))
    return None if newest is None else newest["book"]


@pytest.mark.slow
def test_a_moasha_search_stops_dominated_trials_keeps_its_rungs_through_a_sigkill_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The driver (a process of its own) is SIGKILLed once the rungs hold records of three trials;
    `--resume` reads them back and finishes the search. Every record and decision made before the
    kill is still there, unchanged; a trial stopped before or after it never trains past its rung;
    each MLflow status is the book's decision; and the front, the report and the parent run say
    which trials were stopped."""
    from mlflow import MlflowClient

    from tests.drivers import start_driver, wait_for
    from tuner.cli import main
    from tuner.system.processes import end_session

    space = tmp_path / "moasha.yaml"
    write_space(
        space,
        f"""
        name: moasha-e2e
        metric: [knn_accuracy, recon_error]
        search: grid
        max_concurrent: 1          # sequential: each trial meets the rungs its predecessors left
        scheduler: {{type: moasha, grace_period: 20, reduction_factor: 2}}
        fixed: {{{TINY}}}
        params:
          latent_dim: {{grid: [8, 1, 4, 2, 6, 3]}}   # 1-D embeddings are far worse on both metrics
        """,
    )
    uri = empty_store(tmp_path)
    args = search_args(space, tmp_path)
    storage, log = tmp_path / "ray" / "moasha-e2e", tmp_path / "driver.log"

    def recorded() -> int:
        book = read_book(storage) if storage.is_dir() else None
        return (
            0
            if book is None
            else len({t for b in book["brackets"] for r in b["records"].values() for t in r})
        )

    proc = start_driver(args, log)
    try:
        wait_for(lambda: recorded() >= 3, proc, 300, "three trials at the rungs", log)
    finally:
        end_session(proc.pid, grace=0.0)  # a crash: the driver and its Ray, no clean-up
    proc.wait(timeout=60)
    before = read_book(storage)

    assert main([*args, "--resume"]) == 0  # here: what is checked is what the kill left behind
    book = read_book(storage)
    for b0, b1 in zip(before["brackets"], book["brackets"]):
        for milestone, records in b0["records"].items():
            assert {t: b1["records"][milestone][t] for t in records} == records
            assert {
                t: b1["decisions"][milestone][t] for t in b0["decisions"].get(milestone, {})
            } == b0["decisions"].get(milestone, {})

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("moasha-e2e")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parent = next(r for r in runs if r.data.tags.get("tuner.role") == "search")
    trials = {
        int(r.data.params["latent_dim"]): r
        for r in runs
        if r.data.tags.get("tuner.role") == "trial"
    }
    assert parent.info.status == "FINISHED" and sorted(trials) == [1, 2, 3, 4, 6, 8]

    def history(run, key: str) -> list[tuple[int, float]]:
        return [
            (m.step, m.value)
            for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        ]

    # The first trial passes every rung alone; the 1-D one meets its record at iteration 20 and is
    # worse on both metrics there: stopped, its run KILLED with figures up to the rung only. Both
    # ended before the kill.
    assert trials[8].info.status == "FINISHED" and [
        s for s, _ in history(trials[8], "knn_accuracy")
    ] == list(range(20, ITERATIONS + 1, 20))
    k8, k1 = dict(history(trials[8], "knn_accuracy")), dict(history(trials[1], "knn_accuracy"))
    r8, r1 = dict(history(trials[8], "recon_error")), dict(history(trials[1], "recon_error"))
    assert k1[20] < k8[20] and trials[1].info.status == "KILLED" and sorted(k1) == [20]

    # Each status is the book's decision: stopped at its first STOP rung, before or after the
    # kill, and never trained past it; or finished, with every report.
    tid = {d: r.data.tags["tuner.trial_id"] for d, r in trials.items()}
    decisions = book["brackets"][0]["decisions"]
    for d, run in trials.items():
        stops = [float(m) for m, made in decisions.items() if made.get(tid[d]) == "STOP"]
        steps = [s for s, _ in history(run, "knn_accuracy")]
        if stops:
            assert run.info.status == "KILLED" and max(steps) < min(stops) + 20, (d, steps, stops)
        else:
            assert run.info.status == "FINISHED" and steps[-1] == ITERATIONS, (d, steps)

    # The rungs the scheduler kept (and a resume reads) hold exactly what MLflow holds there.
    at20 = book["brackets"][0]["records"]["20.0"]
    assert at20[tid[8]] == pytest.approx({"knn_accuracy": k8[20], "recon_error": r8[20]})
    assert at20[tid[1]] == pytest.approx({"knn_accuracy": k1[20], "recon_error": r1[20]})
    assert decisions["20.0"][tid[1]] == "STOP"
    stopped = {d for d, r in trials.items() if r.info.status == "KILLED"}
    assert book["stopped"] == len(stopped)

    # tuner report: the Objective's order (front of the finished first), stopped trials said to be.
    csv = tmp_path / "report.csv"
    capsys.readouterr()
    assert (
        main(["report", "--experiment", "moasha-e2e", "--tracking-uri", uri, "--csv", str(csv)])
        == 0
    )
    printed = capsys.readouterr().out
    assert f"6 trials ({len(stopped)} stopped early or interrupted: status KILLED)" in printed
    assert "Pareto front of knn_accuracy (max) and recon_error (min) first" in printed
    table = pd.read_csv(csv)
    finished = table[table["status"] == "FINISHED"]
    front = set(
        finished["trial_id"][
            pareto_mask(finished[["knn_accuracy", "recon_error"]].to_numpy(), ("max", "min"))
        ]
    )
    assert set(table["trial_id"][table["pareto"]]) == front
    assert list(table["pareto"]) == sorted(table["pareto"], reverse=True)  # the front first
    expected = rank_by_config(
        table.drop(columns=["pareto"]).iloc[::-1].reset_index(drop=True),
        ["knn_accuracy", "recon_error"],
        ["max", "min"],
    )
    assert list(table["trial_id"]) == list(expected["trial_id"])
    on_front = table[table["pareto"]]
    first = Objective(("knn_accuracy", "recon_error"), ("max", "min")).order(
        on_front.to_dict("records")
    )[0]
    assert table["trial_id"].iloc[0] == on_front["trial_id"].iloc[first]
    assert set(table["trial_id"][table["status"] == "KILLED"]) == {tid[d] for d in stopped}
    # The parent run's best: the chosen trial, the front's best knn_accuracy (no stopped trial's).
    assert parent.data.metrics["best_knn_accuracy"] == pytest.approx(on_front["knn_accuracy"].max())
