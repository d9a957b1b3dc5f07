"""What the end of a search leaves for people to compare its trials: the importances on the parent
run (metrics and importance.png), the experiment's saved UI view, and report.html. Also what
`tuner report --html` writes, read back from the store."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.core.importance import Importances, param_importances, plot_importances
from tuner.core.metrics import METRIC_MODES, TEST_METRICS
from tuner.tracking import runs, tags
from tuner.tracking.report_html import report_page
from tuner.tracking.ui_view import view_metrics, view_state, write_view

SEARCHED_PREFIX = (
    "searched."  # the parent's params naming the searched settings (runner.search_params)
)
PLOTS = (
    "embedding.png",
    "loss_curves.png",
    "reconstructions.png",
)  # the best trial's, in the report


def searched_settings(parent: Any) -> list[str]:
    """The settings a search searched, in its file's order (sorted by name for a search before the
    tag)."""
    tag = parent.data.tags.get(tags.SEARCHED)
    if tag is not None:
        return [s for s in tag.split(",") if s]
    return [k[len(SEARCHED_PREFIX) :] for k in parent.data.params if k.startswith(SEARCHED_PREFIX)]


def metrics_and_modes(metrics: Sequence[str], modes: Sequence[str]) -> tuple[list[str], list[str]]:
    shown = view_metrics(metrics)
    given = dict(zip(metrics, modes))
    return shown, [given.get(m, METRIC_MODES.get(m, "max")) for m in shown]


def importances_of(
    table: pd.DataFrame, settings: Sequence[str], metrics: Sequence[str]
) -> Importances:
    # computed once by the search (and printed in its summary)
    found = table.attrs.get("importances")
    if isinstance(found, Importances):
        return found
    return param_importances(table, settings, view_metrics(metrics))


def run_names(trial_runs: Sequence[Any]) -> dict[str, str]:
    return {r.data.tags.get(tags.TRIAL_ID, r.info.run_name): r.info.run_name for r in trial_runs}


def best_plots(client: Any, table: pd.DataFrame, trial_runs: Sequence[Any]) -> dict[str, bytes]:
    """The best trial's plots (the table is best first), by caption."""
    by_trial = {r.data.tags.get(tags.TRIAL_ID): r for r in trial_runs}
    done = table[table["status"] == "FINISHED"] if "status" in table else table
    if not len(done) or str(done.iloc[0].get("trial_id")) not in by_trial:
        return {}
    run = by_trial[str(done.iloc[0]["trial_id"])]
    have = {f.path for f in client.list_artifacts(run.info.run_id)}
    out = {}
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a few small files
    with tempfile.TemporaryDirectory() as tmp:
        for name in PLOTS:
            if name in have:
                path = client.download_artifacts(run.info.run_id, name, tmp)
                out[f"best trial {done.iloc[0]['trial_id']} ({run.info.run_name}): {name}"] = Path(
                    path
                ).read_bytes()
    return out


def report_html(
    client: Any,
    parent: Any,
    table: pd.DataFrame,
    metrics: Sequence[str],
    modes: Sequence[str],
    imp: Importances,
    trial_runs: Sequence[Any],
) -> str:
    shown, shown_modes = metrics_and_modes(metrics, modes)
    title = f"search {parent.data.tags.get(tags.SEARCH_ID, parent.info.run_name)}"
    return report_page(
        title,
        table,
        shown,
        shown_modes,
        searched_settings(parent),
        imp,
        run_names(trial_runs),
        best_plots(client, table, trial_runs),
    )


def log_search_view(
    client: Any,
    experiment_id: str,
    parent_run_id: str,
    table: pd.DataFrame,
    metrics: Sequence[str],
    modes: Sequence[str],
) -> int:
    """Importances, saved view and report.html of a search that ended; returns the artifacts
    logged."""
    from mlflow.entities import Metric

    parent = client.get_run(parent_run_id)
    settings = searched_settings(parent)
    trial_runs = runs.trial_runs(client, experiment_id, parent_run_id)
    imp = importances_of(table, settings, metrics)
    now, logged = int(time.time() * 1000), 0
    client.log_batch(
        parent_run_id, metrics=[Metric(k, float(v), now, 0) for k, v in imp.metrics().items()]
    )
    stepped = sorted({k for r in trial_runs for k in r.data.metrics})
    others = [*stepped, *sorted(set(client.get_run(parent_run_id).data.metrics))]
    tested = [t for t in TEST_METRICS if t.removeprefix("test_") in view_metrics(metrics)]
    write_view(client, experiment_id, view_state(settings, metrics, modes, tested, others, stepped))
    with tempfile.TemporaryDirectory() as tmp:
        if plot_importances(imp, Path(tmp) / "importance.png"):
            client.log_artifact(parent_run_id, str(Path(tmp) / "importance.png"))
            logged += 1
        if len(table):
            (Path(tmp) / "report.html").write_text(
                report_html(client, parent, table, metrics, modes, imp, trial_runs)
            )
            client.log_artifact(parent_run_id, str(Path(tmp) / "report.html"))
            logged += 1
    return logged
