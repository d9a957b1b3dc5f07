"""What a search's parent run holds: its search file and settings from the start, and at its end
the best trial's metrics, summary.csv, the Pareto plot and its description (tuner.tracking.note)."""

from __future__ import annotations

import json
import numbers
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.outcome import chosen, parse_require
from tuner.tracking import tags as tag
from tuner.tracking.note import NOTE_TAG, search_note
from tuner.tracking.store import artifact_names, log_params, log_text
from tuner.trainer.metrics import TEST_METRICS, TRIAL_METRICS
from tuner.trainer.plots import plot_pareto


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _yaml_text(spec_yaml: str) -> str:
    """The YAML text itself, or the text of the file it names."""
    try:
        if "\n" not in spec_yaml and spec_yaml.endswith((".yaml", ".yml")) and Path(spec_yaml).is_file():
            return Path(spec_yaml).read_text()
    except OSError:  # e.g. a one-line YAML text too long for a file name
        pass
    return spec_yaml


def log_search_start(client: Any, run: Any, spec_yaml: str, spec_resolved: dict, search_params: dict[str, Any],
                     found: bool) -> Counter:
    """The search's settings as params, its file and resolved spec as artifacts; what a found
    (resumed) run already has is left as it is. Returns what was written."""
    run_id = run.info.run_id
    written = Counter(params=log_params(client, run_id, search_params, run.data.params))
    have = artifact_names(client, run_id) if found else set()
    for name, text in (("search.yaml", _yaml_text(spec_yaml)),
                       ("spec.json", json.dumps(spec_resolved, indent=2, default=str))):
        if name not in have:
            log_text(client, run_id, text, name)
            written.update(artifacts=1)
    return written


def log_search_summary(client: Any, run_id: str, table: pd.DataFrame, metric: list[str], mode: list[str]) -> Counter:
    """Logs to the parent run; returns what was written. Values already there are not logged again,
    so a second `tuner sync` adds no metric point."""
    from mlflow.entities import Metric, RunTag

    written: Counter = Counter()
    run = client.get_run(run_id)
    tags = [RunTag(tag.METRIC, ",".join(metric)), RunTag(tag.MODE, ",".join(mode)),
            RunTag(NOTE_TAG, search_note(run.data.params, run.data.tags, table, metric, mode))]
    best = chosen(table, metric, mode, parse_require(run.data.tags.get(tag.REQUIRE)))
    if best is not None:
        now, logged = int(time.time() * 1000), run.data.metrics
        # The best trial's validation figures as best_*, its test figures under their own names.
        names = {f"best_{k}": k for k in TRIAL_METRICS} | {k: k for k in TEST_METRICS}
        values = [Metric(name, float(best[k]), now, 0) for name, k in names.items()
                  if isinstance(best.get(k), numbers.Real) and pd.notna(best[k]) and logged.get(name) != float(best[k])]
        if "trial_id" in best:
            tags.append(RunTag(tag.BEST_TRIAL, str(best["trial_id"])))
        client.log_batch(run_id, metrics=values)
        written.update(metrics=len(values))
    client.log_batch(run_id, tags=tags)
    with tempfile.TemporaryDirectory() as tmp:
        table.to_csv(Path(tmp) / "summary.csv", index=False)
        client.log_artifact(run_id, str(Path(tmp) / "summary.csv"))
        written.update(artifacts=1)
        if {"recon_error", "knn_accuracy"} <= set(table.columns):
            plot_pareto(table, Path(tmp) / "pareto.png")
            client.log_artifact(run_id, str(Path(tmp) / "pareto.png"))
            written.update(artifacts=1)
    return written
