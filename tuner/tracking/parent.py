"""A search's parent run (`ParentRun`) and what it holds: its search file and settings from the
start, and at its end the best trial's metrics, summary.csv, the Pareto plot and its description
(tuner.tracking.note)."""

from __future__ import annotations

import contextlib
import json
import numbers
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.core.metrics import TEST_METRICS, TRIAL_METRICS
from tuner.core.selection import chosen, parse_require
from tuner.errors import first_line
from tuner.system.secrets import mask_uri
from tuner.tracking import runs
from tuner.tracking import tags as tag
from tuner.tracking.inputs import DataDescription, log_data
from tuner.tracking.note import NOTE_TAG, search_note
from tuner.tracking.search_view import SEARCHED_PREFIX, log_search_view
from tuner.tracking.spool import OfflineSpool, tolerant
from tuner.tracking.store import artifact_names, log_params, log_text, unreachable
from tuner.trainer.plots import plot_pareto


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _yaml_text(spec_yaml: str) -> str:
    """The YAML text itself, or the text of the file it names."""
    try:
        if (
            "\n" not in spec_yaml
            and spec_yaml.endswith((".yaml", ".yml"))
            and Path(spec_yaml).is_file()
        ):
            return Path(spec_yaml).read_text()
    except OSError:  # e.g. a one-line YAML text too long for a file name
        pass
    return spec_yaml


def log_search_start(
    client: Any,
    run: Any,
    spec_yaml: str,
    spec_resolved: dict,
    search_params: dict[str, Any],
    found: bool,
) -> Counter:
    """The search's settings as params, its file and resolved spec as artifacts; what a found
    (resumed) run already has is left as it is. Returns what was written."""
    run_id = run.info.run_id
    written = Counter(params=log_params(client, run_id, search_params, run.data.params))
    have = artifact_names(client, run_id) if found else set()
    for name, text in (
        ("search.yaml", _yaml_text(spec_yaml)),
        ("spec.json", json.dumps(spec_resolved, indent=2, default=str)),
    ):
        if name not in have:
            log_text(client, run_id, text, name)
            written.update(artifacts=1)
    return written


def log_search_summary(
    client: Any, run_id: str, table: pd.DataFrame, metric: list[str], mode: list[str]
) -> Counter:
    """Logs to the parent run; returns what was written. Values already there are not logged again,
    so a second `tuner sync` adds no metric point."""
    from mlflow.entities import Metric, RunTag

    written: Counter = Counter()
    run = client.get_run(run_id)
    tags = [
        RunTag(tag.METRIC, ",".join(metric)),
        RunTag(tag.MODE, ",".join(mode)),
        RunTag(NOTE_TAG, search_note(run.data.params, run.data.tags, table, metric, mode)),
    ]
    best = chosen(table, metric, mode, parse_require(run.data.tags.get(tag.REQUIRE)))
    if best is not None:
        now, logged = int(time.time() * 1000), run.data.metrics
        # The best trial's validation figures as best_*, its test figures under their own names.
        names = {f"best_{k}": k for k in TRIAL_METRICS} | {k: k for k in TEST_METRICS}
        values = [
            Metric(name, float(best[k]), now, 0)
            for name, k in names.items()
            if isinstance(best.get(k), numbers.Real)
            and pd.notna(best[k])
            and logged.get(name) != float(best[k])
        ]
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


@dataclass
class ParentRun:
    """A search's parent run, written from the driver: created (or, resuming, found by its search
    id) at the start with the search's spec, its data and baselines, and ended with its summary."""

    client: Any
    experiment_id: str
    run_id: str
    search_id: str
    status: str  # the parent's status when opened (before any reopening), then as it ended
    spool: OfflineSpool
    written: Counter  # shared with the trial runs: what the search's writer wrote

    @classmethod
    def open(
        cls,
        client: Any,
        experiment_id: str,
        search_id: str,
        spec_yaml: str,
        spec_resolved: dict,
        search_params: dict[str, Any],
        resume: bool,
        reopen: bool,
        spool: OfflineSpool,
        written: Counter,
    ) -> ParentRun:
        """Create (or, resuming, find) the parent run of a search and log its spec (see
        `SearchTracker.open`)."""
        found = runs.parent_run(client, [experiment_id], search_id) if resume else None
        tags = runs.parent_tags(search_id)
        tags.update(
            {
                name: ",".join(as_list(search_params[k]))
                for k, name in tag.SEARCH_PARAM_TAGS.items()
                if k in search_params
            }
        )
        # The searched settings in the file's order (params come back sorted by name): the UI view's
        # columns.
        tags[tag.SEARCHED] = ",".join(
            k[len(SEARCHED_PREFIX) :] for k in search_params if k.startswith(SEARCHED_PREFIX)
        )
        run = found or client.create_run(experiment_id, tags=tags, run_name=search_id)
        parent = cls(
            client, experiment_id, run.info.run_id, search_id, run.info.status, spool, written
        )
        written.update(runs=0 if found else 1)  # zero counts vanish in `+written`
        if found and reopen:
            client.update_run(run.info.run_id, status="RUNNING")
            written.update(statuses=1)
        try:
            written.update(
                log_search_start(client, run, spec_yaml, spec_resolved, search_params, bool(found))
            )
        except BaseException:  # a parent left RUNNING would look like a live search forever
            with contextlib.suppress(Exception):
                client.set_terminated(run.info.run_id, "FAILED")
            raise
        return parent

    @tolerant()
    def set_data(self, data: DataDescription) -> None:
        log_data(self.client, self.run_id, data, trial=False)

    @tolerant()
    def log_baselines(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(str(k), float(v), now, 0) for k, v in metrics.items()]
        for start in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[start : start + 1000])
        self.written.update(metrics=len(batch))

    @tolerant()
    def finish(self, table: pd.DataFrame, metric: list[str], mode: list[str], status: str) -> None:
        """The summary (log_search_summary), the comparison view (search_view), then the end."""
        self.written.update(log_search_summary(self.client, self.run_id, table, metric, mode))
        if len(table):
            try:
                self.written.update(
                    artifacts=log_search_view(
                        self.client, self.experiment_id, self.run_id, table, metric, mode
                    )
                )
            except Exception as err:  # noqa: BLE001 - the comparison view is a help: its failure ends no search
                if unreachable(err):
                    raise
                print(
                    f"tuner: the search's UI view, importances or report.html were not logged: "
                    f"{mask_uri(first_line(err))}",
                    file=sys.stderr,
                    flush=True,
                )
        self.client.set_terminated(self.run_id, status)
        self.status = status
        self.written.update(statuses=1)
