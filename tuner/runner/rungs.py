"""Multi-objective asynchronous successive halving (MOASHA, Schmucker et al. 2021, arXiv
2106.12639) as plain data: brackets of rungs, the results recorded at each, and the rule that
lets a trial continue past a rung. No Ray: runner/moasha.py adapts it to Tune's scheduler API.

The rule is ASHA's (ray.tune.schedulers.async_hyperband._Bracket) with the score generalised: at
its first report at or past a rung's milestone a trial is compared with the results recorded there
before it, and stops when its score is below their (1 - 1/reduction_factor) percentile (numpy's
linear interpolation, NaNs ignored), then joins the record. The score of a result:
- one metric: the metric itself, maximised (so the decisions are ASHA's), a result outside a
  `require:` bound below every one within (by its violation);
- several: minus its place in the Objective's order of the rung's records with it (non-dominated
  rank, crowding distance over normalised metrics; outside a bound after within; NaN last), equal
  figures sharing the best place among them (a tie passes, as in ASHA).
A NaN result is scored -inf: it ranks last (ASHA would let it through).

Every decision is kept, so a result replayed after a resume (a trial restarted from a checkpoint
before its stop reached Tune's saved state) gets the decision it got the first time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuner.core.objective import INVALID, OUTSIDE, WITHIN, Objective

CONTINUE, STOP = "CONTINUE", "STOP"


def milestones(
    grace_period: float, max_t: float, reduction_factor: float, bracket: int
) -> list[float]:
    """The rungs of bracket s, largest first, as Ray's _Bracket builds them."""
    count = int(np.log(max_t / grace_period) / np.log(reduction_factor) - bracket + 1)
    return [grace_period * reduction_factor ** (k + bracket) for k in reversed(range(count))]


def scores(objective: Objective, results: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Larger is better; see the module's docstring."""
    if not objective.multi:
        return _one_metric_scores(objective, results)
    place = objective.positions(results)
    # Equal figures share the best place among them: the order breaks exact ties by input order,
    # which would put a newcomer behind an identical record, and ASHA lets a tie through.
    figures = np.nan_to_num(
        np.column_stack([objective.values(results), objective.violation(results)]), nan=-np.inf
    )
    shared: dict[tuple[float, ...], int] = {}
    for row, p in zip(map(tuple, figures), place):
        shared[row] = min(shared.get(row, p), p)
    score = -np.array([shared[row] for row in map(tuple, figures)], dtype=float)
    return np.where(objective.classes(results) == INVALID, -np.inf, score)


def _one_metric_scores(objective: Objective, results: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The metric's values, as ASHA compares them, while results are within the bounds (places
    would interpolate the percentile differently); a result outside a bound scores below every
    one within, one below the lowest per step of violation (equal violations share a step)."""
    values, cls = objective.values(results)[:, 0], objective.classes(results)
    score = np.where(cls == WITHIN, values, -np.inf)
    outside = np.flatnonzero(cls == OUTSIDE)
    if len(outside):
        floor = values[cls == WITHIN].min() if (cls == WITHIN).any() else 0.0
        violation = objective.violation(results)[outside]
        steps = (violation[None, :] < violation[:, None]).sum(axis=1)
        score[outside] = floor - 1.0 - steps
    return score


def keeps(
    objective: Objective,
    recorded: Sequence[Mapping[str, Any]],
    result: Mapping[str, Any],
    reduction_factor: float,
) -> bool:
    """Whether `result` continues past a rung where `recorded` were reported before it."""
    if not recorded:
        return True
    s = scores(objective, [*recorded, result])
    finite = s[:-1][np.isfinite(s[:-1])]
    if not len(finite):  # nothing valid to compare with (ASHA's nanpercentile gives NaN: continue)
        return True
    cutoff = np.percentile(finite, (1 - 1 / reduction_factor) * 100)
    return not s[-1] < cutoff


@dataclass
class Bracket:
    rungs: list[float]  # milestones, largest first
    # milestone -> trial -> metrics
    records: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # milestone -> trial -> decision
    decisions: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class RungBook:
    """The scheduler's whole state: brackets, which bracket each trial is in, and counts."""

    objective: Objective
    grace_period: float
    max_t: float
    reduction_factor: float
    brackets: list[Bracket]
    assigned: dict[str, int] = field(default_factory=dict)
    stopped: int = 0

    @classmethod
    def new(
        cls,
        objective: Objective,
        grace_period: float,
        max_t: float,
        reduction_factor: float,
        brackets: int = 1,
    ) -> RungBook:
        return cls(
            objective,
            grace_period,
            max_t,
            reduction_factor,
            [
                Bracket(milestones(grace_period, max_t, reduction_factor, s))
                for s in range(brackets)
            ],
        )

    def assign(self, trial_id: str, rng: Any = np.random) -> int:
        """A new trial's bracket, drawn as ASHA draws it (softmax over rung counts); kept."""
        if trial_id not in self.assigned:
            sizes = np.array([len(b.rungs) for b in self.brackets])
            probs = np.e ** (sizes - sizes.max())
            self.assigned[trial_id] = int(rng.choice(len(self.brackets), p=probs / probs.sum()))
        return self.assigned[trial_id]

    def on_result(
        self, trial_id: str, t: float, metrics: Mapping[str, Any], final: bool = False
    ) -> str:
        """The decision for a trial's report at time `t` (its `iteration`). `final`: the trial ended
        by itself (its last result is still recorded, as ASHA does on completion)."""
        bracket = self.brackets[self.assign(trial_id)]
        if t >= self.max_t and not final:  # the end: ASHA records it when the trial completes
            return STOP
        result = {m: _plain(metrics.get(m)) for m in self._columns()}
        for milestone in bracket.rungs:
            key = _key(milestone)
            recorded = bracket.records.setdefault(key, {})
            if t < milestone:
                continue
            if trial_id in recorded:  # past this rung already, or a replay after a resume
                if bracket.decisions.get(key, {}).get(trial_id) == STOP and not final:
                    return STOP
                break
            go = keeps(self.objective, list(recorded.values()), result, self.reduction_factor)
            recorded[trial_id] = result
            decision = CONTINUE if go else STOP
            bracket.decisions.setdefault(key, {})[trial_id] = decision
            if decision == STOP and not final:
                self.stopped += 1
                return STOP
            break
        return CONTINUE

    def _columns(self) -> list[str]:
        return list(dict.fromkeys([*self.objective.metric, *self.objective.require]))

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> str:
        return json.dumps(
            {
                "objective": {
                    "metric": list(self.objective.metric),
                    "mode": list(self.objective.mode),
                    "require": dict(self.objective.require),
                    "tie_break": self.objective.tie_break,
                },
                "grace_period": self.grace_period,
                "max_t": self.max_t,
                "reduction_factor": self.reduction_factor,
                "brackets": [
                    {"rungs": b.rungs, "records": b.records, "decisions": b.decisions}
                    for b in self.brackets
                ],
                "assigned": self.assigned,
                "stopped": self.stopped,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> RungBook:
        d = json.loads(text)
        o = d["objective"]
        objective = Objective(
            tuple(o["metric"]), tuple(o["mode"]), o["require"], o.get("tie_break", "crowding")
        )
        return cls(
            objective,
            d["grace_period"],
            d["max_t"],
            d["reduction_factor"],
            [Bracket(list(b["rungs"]), b["records"], b["decisions"]) for b in d["brackets"]],
            {k: int(v) for k, v in d["assigned"].items()},
            int(d["stopped"]),
        )


def _key(milestone: float) -> str:
    return repr(float(milestone))  # JSON object keys are text


def _plain(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None  # JSON has no NaN; None reads back as missing
