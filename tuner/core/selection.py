"""How trials and searches end, decided once: statuses, the error summary, the results table,
the Pareto front, the bounds a selected trial must meet, and the trials a search selects.

No Ray, no MLflow: the live search (Tune's events), `tuner sync` (Tune's files on disk), the
MLflow writer and the reports all call these, so each rule is written in one place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tuner.core.metrics import METRIC_MODES
from tuner.core.objective import Objective, bound_violation
from tuner.core.objective import pareto_mask as _signed_pareto_mask
from tuner.core.params import cell

RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")  # how an MLflow run of a trial or search ends
UNFINISHED = "UNFINISHED"  # a table row only: interrupted before its end, resumable
REPORTED = ("iteration", *METRIC_MODES)  # the columns of a results table after the searched values


@dataclass(frozen=True)
class TrialOutcome:
    """One trial as a results table shows it."""

    trial_id: str
    status: str  # one of RUN_STATUSES, or UNFINISHED
    config: Mapping[str, Any]  # the trial's settings as its TrialConfig resolves them (to_dict())
    last_result: Mapping[str, Any]  # its last reported metrics


def trial_status(
    last_iteration: float, iterations: int, *, error: bool, reported: bool
) -> str | None:
    """FINISHED once the last iteration was reported (a retried crash that then finished stays
    finished); else FAILED when the trial raised, else KILLED (stopped early or interrupted).
    None for a trial that neither reported nor failed: it never ran."""
    if reported and last_iteration >= iterations:
        return "FINISHED"
    if error:
        return "FAILED"
    return "KILLED" if reported else None


def search_status(statuses: Sequence[str], n_trials: int, scheduled: bool) -> str:
    """FINISHED when every trial of the search ended; KILLED ends a trial only under a scheduler
    (ASHA), otherwise it means the search was interrupted."""
    ended = {"FINISHED", "FAILED"} | ({"KILLED"} if scheduled else set())
    return "FINISHED" if len(statuses) >= n_trials and set(statuses) <= ended else "KILLED"


def error_summary(traceback_text: str) -> str:
    """The exception's line first, then the whole traceback: what a person reads first in MLflow."""
    lines = [line for line in traceback_text.splitlines() if line.strip()]
    return f"{lines[-1]}\n\n{traceback_text}" if lines else traceback_text


def config_id(config: Mapping[str, Any]) -> str:
    """A stable id of a trial's configuration without its seed: the runs of one configuration
    with different seeds (`repeats`) share it. `config` is TrialConfig.to_dict() (or the same
    keys)."""
    rest = {k: v for k, v in config.items() if k != "seed"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:12]


def results_table(
    outcomes: Sequence[TrialOutcome],
    searched: Sequence[str],
    metric: Sequence[str],
    mode: Sequence[str],
) -> pd.DataFrame:
    """One row per trial: id, status, searched values, last metrics, config_id; best first
    (multi-objective: the Pareto front first, flagged in a `pareto` column). Runs of one
    configuration (repeats) rank together by their configuration's mean (see `rank_by_config`)."""
    rows = []
    for trial in outcomes:
        row = {"trial_id": trial.trial_id, "status": trial.status}
        row.update({k: cell(trial.config.get(k)) for k in searched})
        row.update({k: trial.last_result.get(k, np.nan) for k in REPORTED})
        row["config_id"] = config_id(trial.config)
        rows.append(row)
    table = pd.DataFrame(rows, columns=["trial_id", "status", *searched, *REPORTED, "config_id"])
    table = table.dropna(axis=1, how="all")  # kl for VAEs only, fine_knn_accuracy when merged, ...
    for name in metric:
        if name not in table:
            table[name] = np.nan
    return rank_by_config(table, metric, mode)


def rank_by_config(table: pd.DataFrame, metric: Sequence[str], mode: Sequence[str]) -> pd.DataFrame:
    """Best first by each configuration's mean over its runs (the run's own value when it has one
    run), in the Objective's order (`tuner.core.objective`: non-dominated rank, then crowding
    distance; one metric: its value; a NaN last). Every trial is ranked by its figures, stopped and
    failed ones too (their status says so); multi-objective, the front the search selects comes
    first, flagged in a `pareto` column (the complete configurations' means, see `selection`). Runs
    of a configuration stay together, the better first; equal keys keep the table's order."""
    key = _config_key(table)
    means = table.groupby(key)[list(metric)].transform("mean")
    table = table.drop(columns=["pareto"], errors="ignore")
    # bounds pick the chosen trial, not the table's order
    objective = Objective(tuple(metric), tuple(mode))
    heads = ~key.duplicated()
    place = pd.Series(0, index=table.index)
    if len(table):
        place[heads] = objective.positions(means[heads].to_dict("records"))
    ranked = table.assign(
        _first=pd.factorize(key)[0],
        _run=objective.positions(table[list(metric)].to_dict("records")) if len(table) else [],
    )
    ranked = ranked.assign(_place=key.map(place[heads].groupby(key[heads]).first()).to_numpy())
    by = ["_place", "_first", "_run"]
    if len(metric) > 1:
        ranked.insert(2, "pareto", _front_of_complete(table, means, metric, mode))
        ranked["_off"] = ~ranked["pareto"]
        by.insert(0, "_off")
    ranked = ranked.sort_values(by, kind="stable")
    return ranked.drop(
        columns=[c for c in ranked.columns if c.startswith("_") and c in by]
    ).reset_index(drop=True)


# ---------------------------------------------------------------------------- what a search selects
# One rule, read by everything that names a search's best: the final test, model logging and
# registration, the parent run's best_* figures and description, the summary and `tuner report`.


def selection(
    table: pd.DataFrame,
    metric: Sequence[str],
    mode: Sequence[str],
    require: Mapping[str, float] | None = None,
) -> list[str]:
    """The trials a search selects on validation, best first (the table's order).

    Only complete configurations count: every run of it finished (a stopped or failed run's
    figures are not its final state) with every `metric`. One metric: the configuration with the
    best mean within `require` (its mean within the bounds), all its runs; several: every run of
    the configurations on the Pareto front of the means, read whole (the chosen one meets the
    bounds: `chosen`). With one run per configuration, a mean is the run's own value."""
    if table.empty:
        return []
    key = _config_key(table)
    means = table.groupby(key)[list(metric)].transform("mean")
    if len(metric) > 1:
        return list(table["trial_id"][_front_of_complete(table, means, metric, mode)])
    objective = Objective(tuple(metric), tuple(mode), require or {})
    bounded = [m for m in objective.require if m in table and m not in metric]
    config_means = pd.concat([means, table.groupby(key)[bounded].transform("mean")], axis=1)
    within = _complete(table, means) & objective.within(config_means.to_dict("records"))
    if not within.any():
        return []
    candidates = config_means[within]
    first = objective.best(candidates.to_dict("records"))  # the first of equal means
    if first is None:  # every mean is invalid to the Objective (infinite: a diverged model)
        return []
    best = candidates.index[first]
    return list(table["trial_id"][key == key[best]])


def chosen(
    table: pd.DataFrame,
    metric: Sequence[str],
    mode: Sequence[str],
    require: Mapping[str, float] | None = None,
    among: Collection[str] | None = None,
) -> pd.Series | None:
    """The one trial a search names as its best: its figures go to the parent run, its model is
    the registered one. The best by the first metric of the selected runs that meet `require`
    themselves (the registered model is one run), of those in `among` when given (the runs whose
    model was logged). None when no selected run does."""
    if table.empty:
        return None
    picked = table[table["trial_id"].isin(selection(table, metric, mode, require))]
    if among is not None:
        picked = picked[picked["trial_id"].isin(list(among))]
    picked = picked[meets(picked, require or {})]
    # the first of equal values
    first = Objective.of(metric[0], mode[0]).best(picked.to_dict("records"))
    return None if first is None else picked.iloc[first]  # positional: the index may repeat


def _config_key(table: pd.DataFrame) -> pd.Series:
    """Which configuration each row ran (`config_id`); a table without it: one configuration a
    row."""
    return (
        table["config_id"]
        if "config_id" in table
        else pd.Series(range(len(table)), index=table.index)
    )


def _complete(table: pd.DataFrame, means: pd.DataFrame) -> pd.Series:
    """Rows of configurations whose every run finished and has every metric. A hand-made table
    without a status column counts as finished."""
    finished = (
        table["status"].eq("FINISHED") if "status" in table else pd.Series(True, index=table.index)
    )
    every_run = finished.groupby(_config_key(table)).transform("all")
    return every_run & means.notna().all(axis=1)


def _front_of_complete(
    table: pd.DataFrame, means: pd.DataFrame, metric: Sequence[str], mode: Sequence[str]
) -> pd.Series:
    complete = _complete(table, means)
    mask = pd.Series(False, index=table.index)
    mask[complete] = pareto_mask(means[list(metric)][complete].to_numpy(float), mode)
    return mask


def config_table(
    table: pd.DataFrame, metric: Sequence[str], mode: Sequence[str], params: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per configuration (config_id) of a ranked trials table, in its order: `params`
    (shared by the runs), `runs`, `finished` (runs that reached their last iteration), and the
    mean and sample standard deviation (NaN for one run) of every metric over its finished runs
    (all its runs when none finished). `trial_ids` lists the runs, best first."""
    metrics = [
        c for c in table.columns if c.removeprefix("test_") in METRIC_MODES and c != "iteration"
    ]
    rows = []
    for cid, runs in table.groupby("config_id", sort=False):
        finished = runs[runs["status"] == "FINISHED"]
        measured = finished if len(finished) else runs
        row: dict[str, Any] = {
            "config_id": cid,
            **{p: runs[p].iloc[0] for p in params if p in runs},
        }
        row.update(runs=len(runs), finished=len(finished), trial_ids=list(runs["trial_id"]))
        for m in metrics:
            values = pd.to_numeric(measured[m], errors="coerce")
            row[f"{m}_mean"], row[f"{m}_std"] = values.mean(), values.std(ddof=1)
        rows.append(row)
    out = pd.DataFrame(rows)
    if len(metric) > 1 and len(out):
        out.insert(
            1, "pareto", pareto_mask(out[[f"{m}_mean" for m in metric]].to_numpy(float), mode)
        )
    return out


def config_summary(
    table: pd.DataFrame, metric: Sequence[str], mode: Sequence[str], searched: Sequence[str]
) -> pd.DataFrame:
    """The configurations of a ranked trials table as a person reads them (the search's summary and
    `tuner report`): id, the Pareto flag when several metrics, the searched values but the seed,
    runs, finished, and mean / std of the metrics, knn_accuracy, recon_error and their test_
    figures."""
    params = [p for p in searched if p != "seed"]
    configs = config_table(table, metric, mode, params)
    names = dict.fromkeys(
        (
            *metric,
            "knn_accuracy",
            "recon_error",
            *(f"test_{m}" for m in metric),
            "test_knn_accuracy",
            "test_recon_error",
        )
    )
    stats = [f"{m}_{s}" for m in names for s in ("mean", "std") if f"{m}_{s}" in configs]
    return configs[
        [
            "config_id",
            *(["pareto"] if "pareto" in configs else []),
            *params,
            "runs",
            "finished",
            *stats,
        ]
    ]


def pareto_mask(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Rows no other row dominates (at least as good in every metric, better in one). Equal rows
    do not dominate each other, so duplicates on the front all stay; rows with a NaN are off it."""
    signed = np.asarray(values, dtype=float).reshape(len(values), len(modes)) * np.where(
        np.asarray(modes) == "max", 1.0, -1.0
    )
    return _signed_pareto_mask(signed)


def pareto_front(
    table: pd.DataFrame, x: str = "recon_error", y: str = "knn_accuracy"
) -> pd.DataFrame:
    """The finished rows of `table` on the front of lower x and higher y, sorted by x (then y, best
    first). A stopped or failed trial's last figures are not its final state: it is left out."""
    valid = table.dropna(subset=[x, y])
    if "status" in valid:
        valid = valid[valid["status"] == "FINISHED"]
    front = valid[pareto_mask(valid[[x, y]].to_numpy(float), ("min", "max"))]
    return front.sort_values([x, y], ascending=[True, False], kind="stable")


def meets(table: pd.DataFrame, require: Mapping[str, float], suffix: str = "") -> pd.Series:
    """Rows whose metrics are within a search's `require` bounds: at most the bound for a
    minimised metric, at least it for a maximised one; a missing value is not within."""
    columns = {metric + suffix: metric for metric in require if metric + suffix in table}
    rows = table[list(columns)].rename(columns=columns).to_dict("records")
    # the Objective's rule
    return pd.Series(bound_violation(rows, require) == 0, index=table.index, dtype=bool)


def require_text(require: Mapping[str, float]) -> str:
    """`recon_error<=0.045,knn_accuracy>=0.9`: the bounds as the parent run's tag keeps them."""
    return ",".join(
        f"{m}{'<=' if METRIC_MODES[m] == 'min' else '>='}{b!r}" for m, b in require.items()
    )


def parse_require(text: str | None) -> dict[str, float]:
    """require_text's inverse; unknown metrics (a newer tuner's tag) are left out."""
    out = {}
    for part in (text or "").split(","):
        metric, _, bound = part.replace(">=", "<=").partition("<=")
        if metric in METRIC_MODES and bound:
            out[metric] = float(bound)
    return out


def chosen_text(
    table: pd.DataFrame,
    metric: Sequence[str],
    mode: Sequence[str],
    require: Mapping[str, float],
    columns: Sequence[str],
) -> str:
    """What the summary and `tuner report` say of a search's `require` bounds: the trial chosen
    (`chosen`), as a one-row table of `columns` (or that none is)."""
    bounds = require_text(require).replace(",", ", ")
    best = chosen(table, metric, mode, require)
    head = f"chosen: the best {metric[0]} within require ({bounds}) on validation"
    return (
        f"{head}: none"
        if best is None
        else f"{head}:\n{pd.DataFrame([best])[list(columns)].to_string(index=False)}"
    )
