"""What "better" means for a search, written once: its metrics, their modes and its `require:`
bounds. Every part that compares results reads an `Objective`: the results table and what a
search selects (selection.py), the console's best so far, the registry's champion, `tuner report`,
`tuner sync` and the `moasha` scheduler's rungs (runner/rungs.py).

Ranking: a result within every bound ranks before one outside any (constrained domination, Deb
2000: outside ones by their total relative violation); a result with a NaN or missing metric
ranks last. Within a class: non-dominated sorting (front 0 first), then, inside a front, the
larger crowding distance (NSGA-II) over the metrics normalised by the ranked set's range, then
the better first metric (then the next); exact duplicates keep their input order. With one
metric that is the metric's own order.

No Ray, no MLflow, no pandas needed: rows are mappings of metric name to value (a DataFrame's
records work too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuner.core.metrics import METRIC_MODES

WITHIN, OUTSIDE, INVALID = 0, 1, 2  # the classes a result ranks in, best first


@dataclass(frozen=True)
class Objective:
    metric: tuple[str, ...]
    mode: tuple[str, ...]
    require: Mapping[str, float] = field(default_factory=dict)
    # Inside a front: "crowding" (NSGA-II's distance) or "epsnet" (Syne Tune's epsilon-net: the
    # farthest from those already picked). crowding is the default: benchmarks/bench_pareto.py
    # replays both on the same learning curves (`tie_break_replay`).
    tie_break: str = "crowding"

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", tuple(self.metric))
        object.__setattr__(self, "mode", tuple(self.mode))
        object.__setattr__(self, "require", dict(self.require or {}))
        if len(self.metric) != len(self.mode) or not self.metric:
            raise ValueError(f"one mode per metric: {self.metric} / {self.mode}")
        if self.tie_break not in ("crowding", "epsnet"):  # anything else read as epsnet before
            raise ValueError(f"tie_break {self.tie_break!r}: expected crowding or epsnet")

    @classmethod
    def of(
        cls,
        metric: Sequence[str] | str,
        mode: Sequence[str] | str | None = None,
        require: Mapping[str, float] | None = None,
    ) -> Objective:
        metric = (metric,) if isinstance(metric, str) else tuple(metric)
        mode = (
            (mode,) if isinstance(mode, str) else tuple(mode or (METRIC_MODES[m] for m in metric))
        )
        return cls(metric, mode, require or {})

    @property
    def multi(self) -> bool:
        return len(self.metric) > 1

    # ------------------------------------------------------------------ values of rows
    def values(self, rows: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """(n, metrics) in the maximising sense (a minimised metric negated); NaN where missing."""
        signs = np.where(np.asarray(self.mode) == "max", 1.0, -1.0)
        out = np.array([[_number(r.get(m)) for m in self.metric] for r in rows], dtype=float)
        return out.reshape(-1, len(self.metric)) * signs

    def violation(self, rows: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """Per row, the sum over `require` of how far past its bound, relative to the bound (0:
        within every bound); inf when a bounded metric is missing or NaN."""
        return bound_violation(rows, self.require)

    def within(self, rows: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """Rows within every `require` bound (a missing value is not within)."""
        return self.violation(rows) == 0

    def classes(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """WITHIN, OUTSIDE (a bound missed) or INVALID (a metric NaN or missing) per row."""
        finite = np.all(np.isfinite(self.values(rows)), axis=1)
        return np.where(~finite, INVALID, np.where(self.within(rows), WITHIN, OUTSIDE))

    # ------------------------------------------------------------------ two results
    def dominates(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        """Constrained domination: valid beats invalid, within bounds beats outside, less violation
        beats more, else at least as good in every metric and better in one."""
        (ca, cb), (va, vb) = self.classes([a, b]), self.violation([a, b])
        if ca != cb:
            return bool(ca < cb)
        if ca == INVALID:
            return False
        if ca == OUTSIDE and va != vb:
            return bool(va < vb)
        x, y = self.values([a, b])
        return bool(np.all(x >= y) and np.any(x > y))

    def better(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        """`a` is strictly better than `b`: it dominates it (one metric: a larger or smaller value,
        bounds first). Two results on one front are neither better than the other."""
        return self.dominates(a, b)

    # ------------------------------------------------------------------ many results
    def pareto_mask(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Rows with every metric that no other such row dominates, bounds ignored (a search's
        front is read whole; `require` picks the chosen trial from it). Duplicates all stay."""
        return pareto_mask(self.values(rows))

    def sort_keys(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(n, 4): class, violation (0 within the bounds), front, minus crowding distance;
        lexicographically smaller is better."""
        rows = list(rows)
        keys = np.zeros((len(rows), 4))
        cls = self.classes(rows)
        values, viol = self.values(rows), self.violation(rows)
        keys[:, 0], keys[:, 1] = cls, np.where(cls == OUTSIDE, viol, 0.0)
        for c in (WITHIN, OUTSIDE):
            idx = np.flatnonzero(cls == c)
            if not len(idx):
                continue
            fronts = nondominated_fronts(values[idx])
            keys[idx, 2] = fronts
            if self.multi:  # with one metric a front holds equal values: input order decides
                keys[idx, 3] = (
                    -crowding(values[idx], fronts)
                    if self.tie_break == "crowding"
                    else epsilon_net(values[idx], fronts)
                )
        return keys

    def order(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Indices of `rows`, best first (stable: equal keys keep their input order)."""
        keys = self.sort_keys(rows)
        if not len(keys):
            return np.array([], dtype=int)
        # Equal crowding (a front's extremes are all inf): the better first metric, then the next,
        # so the order does not depend on the rows' order; exact duplicates keep it.
        values = np.nan_to_num(-self.values(rows), nan=np.inf)
        ties = [values[:, k] for k in reversed(range(values.shape[1]))]
        return np.lexsort(
            (np.arange(len(keys)), *ties, keys[:, 3], keys[:, 2], keys[:, 1], keys[:, 0])
        )

    def positions(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Each row's place in `order` (0: best)."""
        pos = np.empty(len(rows), dtype=int)
        pos[self.order(rows)] = np.arange(len(rows))
        return pos

    def best(self, rows: Sequence[Mapping[str, Any]]) -> int | None:
        """Index of the first row in `order`, None when there is none or every row is invalid."""
        rows = list(rows)
        if not rows:
            return None
        first = int(self.order(rows)[0])
        return None if self.classes(rows)[first] == INVALID else first

    def describe(self) -> str:
        text = ", ".join(f"{m} ({d})" for m, d in zip(self.metric, self.mode))
        return text + (f" within {self.require}" if self.require else "")


def bound_violation(rows: Iterable[Mapping[str, Any]], require: Mapping[str, float]) -> np.ndarray:
    """The rule of `require:` bounds: at most the bound for a minimised metric (its registry mode),
    at least it for a maximised one. Per row, the sum of how far past each bound, relative to it;
    0 within every bound, inf when a bounded metric is missing or NaN."""
    rows = list(rows)
    total = np.zeros(len(rows))
    for name, bound in require.items():
        v = np.array([_number(r.get(name)) for r in rows], dtype=float)
        past = (v - bound) if METRIC_MODES.get(name, "max") == "min" else (bound - v)
        rel = np.maximum(past, 0.0) / max(abs(bound), 1e-12)
        total += np.where(np.isfinite(v), rel, np.inf)
    return total


def pareto_mask(signed: np.ndarray) -> np.ndarray:
    """Rows (maximised values) no finite row dominates; rows with a NaN are off it."""
    signed = np.asarray(signed, dtype=float)
    finite = np.all(np.isfinite(signed), axis=1)
    mask = np.zeros(len(signed), dtype=bool)
    others = signed[finite]
    for i in np.flatnonzero(finite):
        dominated = np.all(others >= signed[i], axis=1) & np.any(others > signed[i], axis=1)
        mask[i] = not dominated.any()
    return mask


def nondominated_fronts(signed: np.ndarray) -> np.ndarray:
    """Front number of each row of finite maximised values (0: non-dominated), by peeling fronts."""
    signed = np.asarray(signed, dtype=float)
    n = len(signed)
    ge = np.all(signed[:, None, :] >= signed[None, :, :], axis=2)
    gt = np.any(signed[:, None, :] > signed[None, :, :], axis=2)
    dominated_by = ge & gt  # [i, j]: i dominates j
    count = dominated_by.sum(axis=0)
    fronts = np.full(n, -1)
    level, current = 0, np.flatnonzero(count == 0)
    while len(current):
        fronts[current] = level
        count = count - dominated_by[current].sum(axis=0)
        count[fronts >= 0] = -1
        level, current = level + 1, np.flatnonzero(count == 0)
    return fronts


def crowding(signed: np.ndarray, fronts: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance inside each front, every metric scaled by its range over all
    rows (so a metric in [0, 1] and one in [0, 0.05] weigh alike); a front's extremes get inf."""
    signed = np.asarray(signed, dtype=float)
    span = signed.max(axis=0) - signed.min(axis=0)
    scaled = (signed - signed.min(axis=0)) / np.where(span > 0, span, 1.0)
    dist = np.zeros(len(signed))
    for f in np.unique(fronts):
        members = np.flatnonzero(fronts == f)
        # On the distinct points: copies of one result get one distance, so which copy sits at
        # an extreme (inf) does not depend on the input order.
        points, copy_of = np.unique(scaled[members], axis=0, return_inverse=True)
        d = np.zeros(len(points))
        if len(points) <= 2:
            d[:] = np.inf
        else:
            for k in range(points.shape[1]):
                col = points[:, k]
                srt = np.argsort(col, kind="stable")
                d[srt[0]] = d[srt[-1]] = np.inf
                d[srt[1:-1]] += col[srt[2:]] - col[srt[:-2]]
        dist[members] = d[copy_of.reshape(-1)]
    return dist


def epsilon_net(signed: np.ndarray, fronts: np.ndarray) -> np.ndarray:
    """Inside each front, the order of a greedy epsilon-net over the metrics normalised as in
    `crowding`: the best first metric first, then each time the point farthest from those picked."""
    signed = np.asarray(signed, dtype=float)
    span = signed.max(axis=0) - signed.min(axis=0)
    scaled = (signed - signed.min(axis=0)) / np.where(span > 0, span, 1.0)
    out = np.zeros(len(signed))
    for f in np.unique(fronts):
        idx = list(np.flatnonzero(fronts == f))
        picked = [max(idx, key=lambda i: (scaled[i, 0], -i))]
        while len(picked) < len(idx):
            rest = [i for i in idx if i not in picked]
            gaps = [min(np.linalg.norm(scaled[i] - scaled[j]) for j in picked) for i in rest]
            picked.append(rest[int(np.argmax(gaps))])
        out[picked] = np.arange(len(picked))
    return out


def _number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def hypervolume_2d(signed: np.ndarray, reference: Sequence[float]) -> float:
    """The area two maximised metrics dominate above `reference` (the worst corner), by sorting:
    the search's front quality in one number. Rows not better than the reference in both, or
    with a NaN, add nothing."""
    points = np.asarray(signed, dtype=float).reshape(-1, 2)
    ref = np.asarray(reference, dtype=float)
    points = points[np.all(np.isfinite(points), axis=1) & np.all(points > ref, axis=1)]
    if not len(points):
        return 0.0
    points = points[np.lexsort((-points[:, 1], -points[:, 0]))]  # first metric descending
    area, top = 0.0, ref[1]
    for x, y in points:
        if y > top:
            area += (x - ref[0]) * (y - top)
            top = y
    return float(area)
