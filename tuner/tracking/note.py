"""The parent run's description (MLflow shows the `mlflow.note.content` tag as the run's markdown
description): the search file, the best trial and its metrics, the Pareto front, the registered
model. Written at the search's end, and again by `tuner sync`, from what the run holds."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tuner.core.metrics import TRIAL_METRICS
from tuner.core.selection import chosen, pareto_front, parse_require, require_text
from tuner.tracking.tags import CHAMPION, REGISTERED, REQUIRE, SEARCH_ID

NOTE_TAG = "mlflow.note.content"
FRONT_ROWS = 20  # a longer front is in summary.csv


def record_registered(
    client: Any, parent_run_id: str, name: str, version: int, champion: int | None
) -> None:
    """The version a search registered, on its parent run (the note names it)."""
    client.set_tag(parent_run_id, REGISTERED, f"models:/{name}/{version}")
    client.set_tag(parent_run_id, CHAMPION, str(champion))


def search_note(
    params: Mapping[str, str],
    tags: Mapping[str, str],
    table: pd.DataFrame,
    metric: list[str],
    mode: list[str],
) -> str:
    lines = [
        f"**Search file** `{params.get('space_file', '?')}` · {params.get('search', '?')}, "
        f"{len(table)} trials · search id `{tags.get(SEARCH_ID, '?')}`"
    ]
    if "warm_start" in params:
        lines.append(
            f"\n**Warm start** from search `{params['warm_start']}`: "
            f"{params.get('warm_start_used', '?')} earlier trials given to Optuna, "
            f"{params.get('warm_start_skipped', '?')} skipped."
        )
    require = parse_require(tags.get(REQUIRE))
    best = chosen(table, metric, mode, require)
    searched = [c[len("searched.") :] for c in params if c.startswith("searched.")]
    shown = [c for c in ("trial_id", *searched) if c in table]
    if best is not None:
        within = f"; within {require_text(require)}" if require else ""
        lines += [
            f"\n### Best trial: `{best.get('trial_id', '?')}` ({metric[0]}, {mode[0]}{within})\n",
            _markdown(pd.DataFrame([best])[[*shown, *_metrics(table)]]),
        ]
    front = _front(table, metric, mode)
    if len(front):
        axes = ", ".join(f"{m} {'↑' if d == 'max' else '↓'}" for m, d in _axes(metric, mode))
        lines += [
            f"\n### Pareto front ({axes}): {len(front)} trials\n",
            _markdown(front[[*shown, *_metrics(table)]].head(FRONT_ROWS)),
        ]
    if REGISTERED in tags:
        lines.append(
            f"\n### Registered model\n`{tags[REGISTERED]}` (alias `champion`: version "
            f"{tags.get(CHAMPION, '?')})"
        )
    return "\n".join(lines) + "\n"


def _axes(metric: list[str], mode: list[str]) -> list[tuple[str, str]]:
    return (
        list(zip(metric, mode))
        if len(metric) > 1
        else [("recon_error", "min"), ("knn_accuracy", "max")]
    )


def _front(table: pd.DataFrame, metric: list[str], mode: list[str]) -> pd.DataFrame:
    """Multi-objective: the search's own front; else the trade-off pareto.png draws."""
    if "pareto" in table:
        return table[table["pareto"].astype(bool)]
    if {"recon_error", "knn_accuracy"} <= set(table.columns):
        return pareto_front(table)
    return table.iloc[:0]


def _metrics(table: pd.DataFrame) -> list[str]:
    return [k for k in TRIAL_METRICS if k in table and table[k].notna().any()]


def _markdown(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = [
        "| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([head, rule, *rows])


def _cell(value: Any) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")
