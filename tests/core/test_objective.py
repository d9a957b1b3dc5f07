"""The Objective's rules: domination, ranking (non-dominated sort, crowding-distance ties), the
require: bounds (constrained domination), NaN last; and that the table, the summary and
`tuner report`'s order read it alike."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tuner.core.objective import INVALID, OUTSIDE, WITHIN, Objective, crowding, nondominated_fronts
from tuner.core.selection import TrialOutcome, config_summary, rank_by_config, results_table

TWO = Objective(("knn_accuracy", "recon_error"), ("max", "min"))


def r(knn: float, recon: float) -> dict[str, float]:
    return {"knn_accuracy": knn, "recon_error": recon}


def test_domination_respects_each_metrics_mode() -> None:
    assert TWO.dominates(r(0.9, 0.04), r(0.8, 0.05))
    assert TWO.dominates(r(0.9, 0.04), r(0.9, 0.05))  # equal in one, better in the other
    assert not TWO.dominates(r(0.9, 0.05), r(0.8, 0.04))  # a trade-off: neither
    assert not TWO.dominates(r(0.8, 0.04), r(0.9, 0.05))
    assert not TWO.dominates(r(0.9, 0.04), r(0.9, 0.04))  # equal: neither
    assert TWO.better(r(0.9, 0.04), r(0.8, 0.05)) and not TWO.better(r(0.9, 0.05), r(0.8, 0.04))
    one = Objective(("recon_error",), ("min",))
    assert one.better(r(0.1, 0.02), r(0.99, 0.03)) and not one.better(r(0.99, 0.03), r(0.1, 0.02))


def test_nan_or_missing_ranks_last_and_dominates_nothing() -> None:
    rows = [r(math.nan, 0.01), r(0.5, 0.09), {"knn_accuracy": 0.99}, r(0.6, 0.08)]
    assert TWO.order(rows).tolist() == [3, 1, 2, 0]  # the invalid last, by what they have
    assert TWO.classes(rows).tolist() == [INVALID, WITHIN, INVALID, WITHIN]
    assert TWO.dominates(r(0.1, 0.5), r(math.nan, 0.0)) and not TWO.dominates(
        r(math.nan, 0.0), r(0.1, 0.5)
    )
    assert TWO.best([r(math.nan, 0.1)]) is None and TWO.best([]) is None


def test_fronts_by_non_dominated_sorting() -> None:
    signed = TWO.values([r(0.9, 0.05), r(0.8, 0.04), r(0.85, 0.06), r(0.7, 0.07), r(0.95, 0.09)])
    assert nondominated_fronts(signed).tolist() == [0, 0, 1, 2, 0]


def test_ties_on_a_front_go_to_the_least_crowded_with_metrics_normalised() -> None:
    # One front of five; recon spans 0.01..0.05 and knn 0.5..0.9: unnormalised, knn's gaps would
    # swamp recon's. Extremes first (inf), then the point with the widest normalised gap.
    rows = [r(0.5, 0.01), r(0.6, 0.02), r(0.85, 0.035), r(0.88, 0.04), r(0.9, 0.05)]
    d = crowding(TWO.values(rows), np.zeros(5, int))
    assert math.isinf(d[0]) and math.isinf(d[4])
    # point 1: knn gap (0.85-0.5)/0.4 = 0.875 + recon gap (0.035-0.01)/0.04 = 0.625 -> 1.5
    assert np.allclose(
        d[1:4], [1.5, (0.88 - 0.6) / 0.4 + 0.02 / 0.04, (0.9 - 0.85) / 0.4 + 0.015 / 0.04]
    )
    assert TWO.order(rows).tolist() == [4, 0, 1, 2, 3]  # extremes: the better knn first


def test_constrained_domination_puts_results_outside_a_bound_after_every_one_within() -> None:
    bounded = Objective(("knn_accuracy", "recon_error"), ("max", "min"), {"recon_error": 0.045})
    rows = [r(0.99, 0.05), r(0.5, 0.04), r(0.97, 0.044), r(0.98, 0.046), r(math.nan, 0.01)]
    assert bounded.classes(rows).tolist() == [OUTSIDE, WITHIN, WITHIN, OUTSIDE, INVALID]
    # Within: 0.97/0.044 dominates 0.5/0.04? no (recon worse) -> both front 0; outside by violation.
    assert bounded.order(rows).tolist()[2:] == [3, 0, 4]
    assert set(bounded.order(rows).tolist()[:2]) == {1, 2}
    assert bounded.dominates(r(0.1, 0.045), r(0.99, 0.0451))
    assert bounded.dominates(r(0.9, 0.046), r(0.99, 0.05))  # both outside: less violation first
    assert bounded.within([r(0.1, 0.045), r(0.1, 0.0450001), {"knn_accuracy": 1.0}]).tolist() == [
        True,
        False,
        False,
    ]


def test_one_metric_orders_by_its_value_keeping_ties_in_input_order() -> None:
    one = Objective(("knn_accuracy",), ("max",))
    rows = [r(0.8, 0), r(0.9, 0), r(0.8, 0), r(math.nan, 0), r(0.95, 0)]
    assert one.order(rows).tolist() == [4, 1, 0, 2, 3]
    assert one.best(rows) == 4


def outcome(tid: str, status: str, mu: float, knn: float, recon: float) -> TrialOutcome:
    return TrialOutcome(tid, status, {"mu": mu, "seed": 0}, {"iteration": 100, **r(knn, recon)})


def test_the_table_the_summary_and_a_re_ranked_report_agree_on_a_multi_objective_order() -> None:
    """`tuner report` re-ranks the table it reads from MLflow (rank_by_config on the search's
    metrics); the summary's configurations come from results_table. Both read the Objective."""
    trials = [
        outcome("a", "FINISHED", 0.1, 0.80, 0.030),
        outcome("b", "FINISHED", 0.2, 0.95, 0.050),
        outcome("c", "KILLED", 0.3, 0.99, 0.020),
        outcome("d", "FINISHED", 0.4, 0.90, 0.040),
        outcome("e", "FINISHED", 0.5, 0.85, 0.045),
        outcome("f", "FINISHED", 0.6, 0.70, 0.060),
    ]
    metric, mode = ("knn_accuracy", "recon_error"), ("max", "min")
    table = results_table(trials, ["mu"], metric, mode)
    # Front of the finished: a, b, d (e is dominated by d); its extremes first (b, the better knn,
    # then a), then d;
    # then the rest by the Objective: c (stopped, its figures beat all) then e then f.
    assert list(table["trial_id"]) == ["b", "a", "d", "c", "e", "f"]
    assert list(table["pareto"]) == [True, True, True, False, False, False]
    shuffled = (
        table.sample(frac=1.0, random_state=3).drop(columns=["pareto"]).reset_index(drop=True)
    )
    report = rank_by_config(shuffled, list(metric), list(mode))
    assert list(report["trial_id"]) == list(table["trial_id"])
    summary = config_summary(table, metric, mode, ["mu"])
    assert list(summary["mu"]) == [0.2, 0.1, 0.4, 0.3, 0.5, 0.6]
    assert list(config_summary(report, metric, mode, ["mu"])["mu"]) == list(summary["mu"])


def test_an_empty_table_ranks() -> None:
    empty = pd.DataFrame(columns=["trial_id", "status", "knn_accuracy", "recon_error", "config_id"])
    assert rank_by_config(empty, ["knn_accuracy", "recon_error"], ["max", "min"]).empty


def test_hypervolume_by_sorting_matches_moocore() -> None:
    import pytest

    moocore = pytest.importorskip("moocore")  # the test extra installs it
    from tuner.core.objective import hypervolume_2d

    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 40):
        rows = [
            r(float(k), float(e)) for k, e in zip(rng.uniform(0.5, 1, n), rng.uniform(0.01, 0.1, n))
        ]
        rows.append(r(math.nan, 0.0))  # ignored
        signed = TWO.values(rows)
        ref = np.array([0.0, -0.12])  # knn 0, recon 0.12 (signed: -0.12)
        finite = signed[np.all(np.isfinite(signed), axis=1)]
        expected = moocore.hypervolume(finite, ref=ref, maximise=True)
        assert hypervolume_2d(signed, ref) == pytest.approx(expected, rel=1e-12)
    assert hypervolume_2d(np.array([[1.0, 1.0]]), [0.0, 0.0]) == 1.0
    assert hypervolume_2d(
        np.array([[1.0, 1.0], [2.0, 0.5], [0.5, 2.0], [0.4, 0.4]]), [0.0, 0.0]
    ) == pytest.approx(1.0 + 0.5 * 1.0 + 0.5 * 1.0)
    assert hypervolume_2d(np.array([[-1.0, 5.0]]), [0.0, 0.0]) == 0.0


def test_an_epsilon_net_picks_the_farthest_next() -> None:
    rows = [r(0.5, 0.01), r(0.6, 0.02), r(0.85, 0.035), r(0.88, 0.04), r(0.9, 0.05)]
    net = Objective(TWO.metric, TWO.mode, tie_break="epsnet")
    # best knn first (0.9), then the farthest from it (0.5), then the farthest from both (0.6?):
    # normalised: 0.6/0.02 -> (0.25, .75), 0.85/0.035 -> (0.875, 0.375); 0.85 is farther from both.
    assert net.order(rows).tolist()[:3] == [4, 0, 2]


def test_exact_duplicates_on_a_front_keep_their_input_order() -> None:
    # Crowding gave one copy of a front's extreme inf and the next copy a finite distance, so the
    # order of equal results depended on where they sat in the input.
    o = Objective(("knn_accuracy", "recon_error"), ("max", "min"))
    same = {"knn_accuracy": 0.9, "recon_error": 0.1}
    assert list(o.order([same] * 4)) == [0, 1, 2, 3]
    rows = [
        same,
        {"knn_accuracy": 0.5, "recon_error": 0.01},
        dict(same),
        {"knn_accuracy": 0.7, "recon_error": 0.05},
    ]
    assert list(o.order(rows)) == [
        0,
        2,
        1,
        3,
    ]  # the two extremes (the copies first), then the middle


def test_an_unknown_tie_break_is_refused_not_read_as_an_epsilon_net() -> None:
    import pytest

    with pytest.raises(ValueError, match="crowding or epsnet"):
        Objective(TWO.metric, TWO.mode, tie_break="crowd")
