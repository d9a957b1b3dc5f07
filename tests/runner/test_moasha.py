"""moasha's decisions: the rung rule on hand-made records, ASHA's decisions with one metric, and
a search resumed after its driver was SIGKILLed deciding as the uninterrupted one does."""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.fs as pafs
import pytest
from ray.tune.schedulers import ASHAScheduler

from tuner.core.objective import Objective
from tuner.runner.moasha import MOASHAScheduler, latest_book
from tuner.runner.rungs import CONTINUE, STOP, RungBook, keeps, milestones
from tuner.system.tune_storage import ExperimentDir

TWO = Objective(("knn_accuracy", "recon_error"), ("max", "min"))


def r(knn: float, recon: float) -> dict[str, float]:
    return {"knn_accuracy": knn, "recon_error": recon}


def test_a_rung_keeps_the_best_third_by_non_dominated_rank() -> None:
    # Recorded: a front of two (0.9/0.05, 0.8/0.03) and two dominated ones. rf 3: the cutoff is the
    # 67th percentile of the scores, so a newcomer must land in the best third of the five.
    recorded = [r(0.9, 0.05), r(0.8, 0.03), r(0.7, 0.06), r(0.6, 0.07)]
    assert keeps(TWO, recorded, r(0.95, 0.02), 3)  # dominates all
    assert not keeps(TWO, recorded, r(0.75, 0.055), 3)  # second front
    # On the front, between its two: the front's extremes (crowding inf) rank first, so it is third.
    assert not keeps(TWO, recorded, r(0.85, 0.04), 3)
    assert keeps(TWO, recorded, r(0.85, 0.04), 1.5)  # a milder rung keeps it
    assert keeps(TWO, recorded, r(0.5, 0.01), 3)  # a new extreme of the front
    assert not keeps(TWO, recorded, r(math.nan, 0.0), 1.5)  # NaN ranks last
    assert keeps(TWO, [], r(math.nan, 0.0), 3)  # nothing to compare with
    bounded = Objective(TWO.metric, TWO.mode, {"recon_error": 0.05})
    # 0.99/0.055 beats every record on knn, but misses the bound that two records meet.
    assert keeps(TWO, recorded, r(0.99, 0.055), 3) and not keeps(
        bounded, recorded, r(0.99, 0.055), 3
    )


def test_a_bracket_decides_once_per_rung_and_replays_its_decision() -> None:
    book = RungBook.new(TWO, grace_period=10, max_t=90, reduction_factor=3)
    assert book.brackets[0].rungs == [90, 30, 10] == milestones(10, 90, 3, 0)
    assert book.on_result("a", 10, r(0.9, 0.05)) == CONTINUE  # first at the rung
    assert book.on_result("b", 10, r(0.5, 0.09)) == STOP  # dominated by a
    assert book.on_result("b", 10, r(0.5, 0.09)) == STOP  # replayed (a resume): the same
    assert book.on_result("a", 20, r(0.1, 0.9)) == CONTINUE  # between rungs: no decision
    assert book.on_result("c", 12, r(0.95, 0.04)) == CONTINUE  # first report past the rung
    assert book.on_result("a", 90, r(0.9, 0.05)) == STOP  # the end (max_t)
    assert book.stopped == 1 and sorted(book.brackets[0].records["10.0"]) == ["a", "b", "c"]
    assert RungBook.from_json(book.to_json()).to_json() == book.to_json()


class FakeTrial(SimpleNamespace):
    pass


def sequence(seed: int, n_trials: int, max_t: int, step: int) -> list[tuple[str, int, float]]:
    """Trials reporting every `step` iterations, interleaved at random, with noisy learning
    curves."""
    rng = np.random.default_rng(seed)
    level = {f"t{i}": rng.uniform(0, 1) for i in range(n_trials)}
    clocks = {t: 0 for t in level}
    out = []
    while clocks:
        t = rng.choice(sorted(clocks))
        clocks[t] += step
        out.append((t, clocks[t], float(level[t] * clocks[t] / max_t + rng.normal(0, 0.05))))
        if clocks[t] >= max_t:
            del clocks[t]
    return out


def drive(scheduler, results, add=True) -> list[str]:
    decisions, stopped, trials = [], set(), {}
    for tid, t, value in results:
        if tid in stopped:
            continue
        if tid not in trials:
            trials[tid] = FakeTrial(trial_id=tid)
            if add:
                scheduler.on_trial_add(None, trials[tid])
        result = {"iteration": t, "knn_accuracy": value}
        d = scheduler.on_trial_result(None, trials[tid], result)
        decisions.append(f"{tid}@{t}:{d}")
        if d == "STOP":
            stopped.add(tid)
            scheduler.on_trial_complete(None, trials[tid], result)
    return decisions


@pytest.mark.parametrize(
    "seed,brackets,rf,mode",
    [(0, 1, 3, "max"), (1, 1, 2, "max"), (2, 2, 3, "max"), (3, 1, 4, "min"), (4, 3, 2, "max")],
)
def test_with_one_metric_moasha_decides_as_ashas(
    seed: int, brackets: int, rf: float, mode: str
) -> None:
    results = sequence(seed, n_trials=30, max_t=81, step=3)
    asha = ASHAScheduler(
        time_attr="iteration",
        metric="knn_accuracy",
        mode=mode,
        max_t=81,
        grace_period=3,
        reduction_factor=rf,
        brackets=brackets,
    )
    np.random.seed(seed)  # both draw brackets from numpy's global generator, as ASHA does
    expected = drive(asha, results)
    ours = MOASHAScheduler(
        Objective(("knn_accuracy",), (mode,)),
        time_attr="iteration",
        max_t=81,
        grace_period=3,
        reduction_factor=rf,
        brackets=brackets,
    )
    np.random.seed(seed)
    assert drive(ours, results) == expected
    # it stopped some
    assert 0 < sum(d.endswith("STOP") and not d.split("@")[1].startswith("81") for d in expected)


def local_dir(path: Path) -> ExperimentDir:
    return ExperimentDir(str(path), pafs.LocalFileSystem(), str(path))


def multi_sequence(seed: int) -> list[tuple[str, int, dict]]:
    rng = np.random.default_rng(seed)
    out = []
    for tid, t, v in sequence(seed, n_trials=24, max_t=27, step=1):
        out.append((tid, t, r(v, 0.1 - 0.05 * v + rng.normal(0, 0.01))))
    return out


def drive_multi(scheduler, results) -> list[str]:
    decisions, stopped = [], set()
    for tid, t, metrics in results:
        if tid in stopped:
            continue
        trial = FakeTrial(trial_id=tid)
        scheduler.on_trial_add(None, trial)
        d = scheduler.on_trial_result(None, trial, {"iteration": t, **metrics})
        decisions.append(f"{tid}@{t}:{d}")
        if d == "STOP":
            stopped.add(tid)
    return decisions


def make(exp_dir: ExperimentDir | None) -> MOASHAScheduler:
    return MOASHAScheduler(
        TWO,
        time_attr="iteration",
        max_t=27,
        grace_period=1,
        reduction_factor=3,
        brackets=2,
        exp_dir=exp_dir,
    )


def test_a_resumed_scheduler_decides_as_the_uninterrupted_one(tmp_path: Path) -> None:
    """The driver (a child process) is SIGKILLed after 150 results; a scheduler built afresh, as
    Tune unpickles it from tuner.pkl on --resume, reads the rungs back. Trials restart from their
    last checkpoint, so some results arrive a second time; each gets the decision it got the first
    time."""
    results = multi_sequence(5)
    np.random.seed(0)
    uninterrupted = drive_multi(make(None), results)
    assert 0 < sum(d.endswith("STOP") for d in uninterrupted)
    exp = tmp_path / "exp"
    exp.mkdir()
    child = textwrap.dedent(f"""
        import os, pickle, signal, sys
        import numpy as np
        from tests.runner.test_moasha import drive_multi, local_dir, make, multi_sequence
        from pathlib import Path
        np.random.seed(0)
        scheduler = make(local_dir(Path({str(exp)!r})))
        Path({str(tmp_path / "tuner.pkl")!r}).write_bytes(\
pickle.dumps(make(local_dir(Path({str(exp)!r})))))
        print("\\n".join(drive_multi(scheduler, multi_sequence(5)[:150])), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])},
    )
    assert proc.returncode == -9, proc.stderr
    before = proc.stdout.split()
    assert latest_book(local_dir(exp))["writes"] > 0 and before == uninterrupted[: len(before)]
    # rungs empty, as pickled at the start
    resumed = pickle.loads((tmp_path / "tuner.pkl").read_bytes())
    replay_from = 120  # the last checkpoints were older than the kill: results 120..149 come again
    seen = {d.split(":")[0] for d in before}
    stopped_before = {d.split("@")[0] for d in before if d.endswith("STOP")}
    again = drive_multi(
        resumed,
        [
            x
            for x in results[replay_from:]
            if x[0] not in stopped_before or f"{x[0]}@{x[1]}" in seen
        ],
    )
    expected = [
        d
        for d in uninterrupted
        if d.split(":")[0] not in {f"{tid}@{t}" for tid, t, _ in results[:replay_from]}
        or results.index(next(x for x in results if f"{x[0]}@{x[1]}" == d.split(":")[0]))
        >= replay_from
    ]
    assert again == expected


# ------------------------------------------------------------------ the search file


TWO_METRICS = "name: s\nmetric: [knn_accuracy, recon_error]\nsearch: random\nsamples: 8\n"
ITERS = "fixed: {iterations: 300, eval_every: 100}\nparams:\n  mu: {uniform: [0.1, 0.9]}\n"


@pytest.mark.parametrize(
    "body,key,fix",
    [
        (
            "scheduler: {type: moasha, grace_periods: 100}\n",
            "scheduler.grace_periods",
            "did you mean 'grace_period'",
        ),
        (
            "scheduler: {type: moasha, grace_period: 400}\n",
            "scheduler.grace_period",
            "beyond the last iteration (300)",
        ),
        (
            "scheduler: {type: moasha, grace_period: 300}\n",
            "scheduler.grace_period",
            "would never stop a trial",
        ),
        (
            "scheduler: {type: moasha, grace_period: 250}\n",
            "scheduler.grace_period",
            "every rung (250) is first reported at the last iteration (300, with eval_every 100)",
        ),
        (
            "scheduler: {type: moasha, reduction_factor: 1}\n",
            "scheduler.reduction_factor",
            "expected a number > 1",
        ),
        (
            "scheduler: {type: moasha, reduction_factor: 0.5}\n",
            "scheduler.reduction_factor",
            "expected a number > 1",
        ),
        (
            "repeats: 2\nscheduler: moasha\n",
            "repeats",
            "scheduler: moasha: early stopping would stop some seeds",
        ),
        # Bracket 1's only rung is 300, the last iteration: its trials (a quarter) would never be
        # stopped.
        (
            "scheduler: {type: moasha, grace_period: 100, brackets: 2}\n",
            "scheduler.brackets",
            "bracket 1 would never stop a trial: its first rung (300) is first reported at the "
            "last iteration (300, with eval_every 100); use brackets: 1",
        ),
    ],
)
def test_validate_refuses_moasha_mistakes_with_file_key_and_fix(
    tmp_path: Path, capsys, body: str, key: str, fix: str
) -> None:
    from tuner.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(TWO_METRICS + body + ITERS)
    assert main(["validate", "--space", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and f"{key}:" in err and fix in err and "Traceback" not in err


def test_moasha_takes_several_metrics_and_asha_points_to_it(tmp_path: Path, capsys) -> None:
    from tuner.cli import main
    from tuner.space.load import load_spec

    path = tmp_path / "s.yaml"
    path.write_text(
        TWO_METRICS + "scheduler: {type: moasha, grace_period: 100, reduction_factor: 3}\n" + ITERS
    )
    spec = load_spec(path)
    assert (spec.scheduler.type, spec.scheduler.grace_period, spec.scheduler.max_t) == (
        "moasha",
        100,
        300,
    )
    assert (
        spec.resolved()["scheduler"]["type"] == "moasha"
        and "moasha on iterations" in spec.describe()
    )
    assert main(["validate", "--space", str(path)]) == 0
    path.write_text(TWO_METRICS + "scheduler: asha\n" + ITERS)
    assert main(["validate", "--space", str(path)]) == 2
    assert "use scheduler: moasha" in capsys.readouterr().err


def test_the_shipped_moasha_files_hold_what_their_headers_say() -> None:
    from tests.paths import REPO_ROOT
    from tuner.space.load import load_spec

    d2 = load_spec(REPO_ROOT / "search_spaces" / "mnist_d2_moasha.yaml")
    assert (d2.scheduler.type, d2.scheduler.grace_period, d2.scheduler.max_t, d2.repeats) == (
        "moasha",
        1000,
        5000,
        1,
    )
    assert (
        d2.n_trials == 6 and set(d2.params) == {"mu", "lr"} and d2.require == {"recon_error": 0.045}
    )
    assert milestones(1000, 5000, 3, 0) == [3000, 1000]  # the header's rungs
    pareto = load_spec(REPO_ROOT / "search_spaces" / "pareto.yaml")
    assert (pareto.search, pareto.n_trials, pareto.scheduler.type) == ("optuna", 24, "moasha")
    assert milestones(100, 600, 3, 0) == [300, 100]
    assert set(pareto.params) == {"mu", "latent_dim", "margin", "dropout", "lr"}


def test_optuna_is_told_a_trial_moasha_stopped_as_pruned_and_a_finished_one_as_complete() -> None:
    import optuna
    from ray import tune

    from tuner.runner.warm_optuna import WarmOptunaSearch

    searcher = WarmOptunaSearch(
        space={"mu": tune.uniform(0.0, 1.0)},
        metric=["knn_accuracy", "recon_error"],
        mode=["max", "min"],
        sampler=optuna.samplers.RandomSampler(seed=0),
        budget=300,
    )
    for tid in ("stopped", "finished", "longer"):
        assert searcher.suggest(tid) is not None
    searcher.on_trial_complete("stopped", {"iteration": 100, **r(0.9, 0.05)})
    searcher.on_trial_complete("finished", {"iteration": 300, **r(0.8, 0.04)})
    # A searched `iterations` sets the trial's own budget (Tune flattens the config into the
    # result).
    searcher.on_trial_complete(
        "longer", {"iteration": 300, "config/iterations": 600, **r(0.7, 0.03)}
    )
    states = [t.state for t in searcher._ot_study.trials]
    assert states == [
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    ]
    assert searcher._ot_study.trials[1].values == [0.8, 0.04]


def test_a_result_equal_to_a_kept_record_is_kept_as_asha_keeps_ties() -> None:
    # ASHA stops only a score below the cutoff: a tie with the records passes. A place in the
    # Objective's order breaks exact ties by input order (the newcomer last), which stopped a
    # result identical to the record it was measured against.
    a = r(0.9, 0.1)
    assert keeps(TWO, [a], dict(a), 2) and keeps(TWO, [a, a], dict(a), 3)
    assert not keeps(TWO, [a], r(0.9, 0.11), 2)  # dominated by the record: still stops
    # One metric with a bound: within it, the same decisions as ASHA's on the metric's values.
    bounded = Objective(("knn_accuracy",), ("max",), {"recon_error": 0.5})
    recorded = [r(v, 0.1) for v in (0.1, 0.2, 0.3, 0.4)]  # rf 3: ASHA's cutoff is 0.3 exactly
    assert keeps(bounded, recorded, r(0.3, 0.1), 3) and not keeps(
        bounded, recorded, r(0.25, 0.1), 3
    )
    assert keeps(Objective(("knn_accuracy",), ("max",)), recorded, r(0.3, 0.1), 3)


def test_the_rungs_file_keeps_the_objectives_tie_break() -> None:
    # A resumed book read back with crowding when it decided by an epsilon-net would rank the
    # rungs' records differently from the uninterrupted one.
    book = RungBook.new(
        Objective(TWO.metric, TWO.mode, {"recon_error": 0.1}, tie_break="epsnet"), 1, 27, 3
    )
    assert RungBook.from_json(book.to_json()).objective == book.objective


def test_a_rung_that_trials_reporting_often_reach_in_time_is_not_refused(
    tmp_path: Path, capsys
) -> None:
    # eval_every searched over 10 and 100: the trials reporting every 10 iterations meet the rung
    # at 250, before their last iteration (300), so moasha can stop them; only when even the most
    # frequent reports reach a rung at the end would it never stop a trial.
    from tuner.cli import main

    path = tmp_path / "s.yaml"
    body = (
        TWO_METRICS.replace("random", "grid")
        + "scheduler: {type: moasha, grace_period: 250}\n"
        + "fixed: {iterations: 300}\nparams:\n  eval_every: {grid: [%s]}\n"
    )
    path.write_text(body % "10, 100")
    assert main(["validate", "--space", str(path)]) == 0
    path.write_text(body % "100, 150")
    assert main(["validate", "--space", str(path)]) == 2
    assert "scheduler.grace_period:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "seed,brackets,rf,mode", [(0, 1, 3, "max"), (1, 1, 2, "max"), (3, 1, 4, "min")]
)
def test_with_one_metric_and_a_bound_every_result_meets_moasha_decides_as_ashas(
    seed: int, brackets: int, rf: float, mode: str
) -> None:
    # A require: bound changes nothing while every result is within it: the rung compares the
    # metric's values as ASHA does (places in the order interpolate differently: 0.4 against
    # records 0, 0.1, 0.9, 1.0 passed a rung of factor 2 that ASHA's cutoff 0.5 stops).
    results = sequence(seed, n_trials=30, max_t=81, step=3)
    asha = ASHAScheduler(
        time_attr="iteration",
        metric="knn_accuracy",
        mode=mode,
        max_t=81,
        grace_period=3,
        reduction_factor=rf,
        brackets=brackets,
    )
    np.random.seed(seed)
    expected = drive(asha, results)
    bounded = Objective(("knn_accuracy",), (mode,), {"knn_accuracy": -5.0})  # every result meets it
    ours = MOASHAScheduler(
        bounded,
        time_attr="iteration",
        max_t=81,
        grace_period=3,
        reduction_factor=rf,
        brackets=brackets,
    )
    np.random.seed(seed)
    assert drive(ours, results) == expected
    recorded = [r(v, 0.1) for v in (0.0, 0.1, 0.9, 1.0)]
    assert not keeps(
        Objective(("knn_accuracy",), ("max",), {"recon_error": 0.5}), recorded, r(0.4, 0.1), 2
    )
    # Outside the bound still ranks after every result within it, whatever its value.
    assert not keeps(
        Objective(("knn_accuracy",), ("max",), {"recon_error": 0.5}), recorded, r(0.99, 0.6), 2
    )
