"""How trials and searches end, decided once: statuses, the error summary, the results table,
the Pareto front and the best row.

No Ray, no MLflow: the live search (Tune's events), `tuner sync` (Tune's files on disk), the
MLflow writer and the reports all call these, so each rule is written in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from tuner.trainer.metrics import METRIC_MODES

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


def trial_status(last_iteration: float, iterations: int, *, error: bool, reported: bool) -> str | None:
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


def results_table(outcomes: Sequence[TrialOutcome], searched: Sequence[str], metric: Sequence[str],
                  mode: Sequence[str]) -> pd.DataFrame:
    """One row per trial: id, status, searched values, last metrics; best first (multi-objective:
    the Pareto front first, flagged in a `pareto` column)."""
    rows = []
    for trial in outcomes:
        row = {"trial_id": trial.trial_id, "status": trial.status}
        row.update({k: _cell(trial.config.get(k)) for k in searched})
        row.update({k: trial.last_result.get(k, np.nan) for k in REPORTED})
        rows.append(row)
    table = pd.DataFrame(rows, columns=["trial_id", "status", *searched, *REPORTED])
    table = table.dropna(axis=1, how="all")  # kl for VAEs only, fine_knn_accuracy when merged, ...
    for name in metric:
        if name not in table:
            table[name] = np.nan
    if len(metric) > 1:
        table.insert(2, "pareto", pareto_mask(table[list(metric)].to_numpy(float), mode))
        by, ascending = ["pareto", metric[0]], [False, mode[0] == "min"]
    else:
        by, ascending = [metric[0]], [mode[0] == "min"]
    return table.sort_values(by, ascending=ascending, na_position="last", kind="stable").reset_index(drop=True)


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def pareto_mask(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Rows no other row dominates (at least as good in every metric, better in one). Equal rows
    do not dominate each other, so duplicates on the front all stay; rows with a NaN are off it."""
    signed = np.asarray(values, dtype=float) * np.where(np.asarray(modes) == "max", 1.0, -1.0)
    finite = np.all(np.isfinite(signed), axis=1)
    mask = np.zeros(len(signed), dtype=bool)
    others = signed[finite]
    for i in np.flatnonzero(finite):
        dominated = np.all(others >= signed[i], axis=1) & np.any(others > signed[i], axis=1)
        mask[i] = not dominated.any()
    return mask


def pareto_front(table: pd.DataFrame, x: str = "recon_error", y: str = "knn_accuracy") -> pd.DataFrame:
    """The rows of `table` on the front of lower x and higher y, sorted by x (then y, best first)."""
    valid = table.dropna(subset=[x, y])
    front = valid[pareto_mask(valid[[x, y]].to_numpy(float), ("min", "max"))]
    return front.sort_values([x, y], ascending=[True, False], kind="stable")


def best_row(table: pd.DataFrame, metric: str, mode: str) -> pd.Series | None:
    """The row with the best value of `metric` (None when no row has one)."""
    if metric not in table or table[metric].notna().sum() == 0:
        return None
    values = pd.to_numeric(table[metric], errors="coerce").reset_index(drop=True)
    return table.iloc[values.idxmax() if mode == "max" else values.idxmin()]  # positional: index may repeat
