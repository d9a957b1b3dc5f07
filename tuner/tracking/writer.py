"""MLflow logging from the driver: the one writer. Reading back lives in `tuner.tracking.reader`.

Everything goes through an explicit `MlflowClient(tracking_uri=...)`: the fluent API's
global state (`mlflow.set_experiment` exports MLFLOW_EXPERIMENT_ID) misroutes Ray's runs.
Runs are found by tags, never by an in-memory map, so a resumed search reuses its runs:
parent `tuner.role=search` + `tuner.search_id`; trial `mlflow.parentRunId` + `tuner.trial_id`.
A store that stops answering mid-search turns the tracker offline: the search goes on,
Tune keeps every result, and `tuner sync` writes the rest later (see `tuner.tracking.sync`).
MLflow is imported inside functions so `import tuner.tracking.writer` stays cheap.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from tuner.trainer.metrics import TRIAL_METRICS

from tuner.tracking.store import (PARENT_FILTER, artifact_names, connect, experiment_id,  # noqa: F401
                                  log_params, log_text, mask_uri, resolve_tracking_uri, unreachable)

STATUSES = ("FINISHED", "FAILED", "KILLED")


def _yaml_text(spec_yaml: str) -> str:
    """The YAML text itself, or the text of the file it names."""
    try:
        if "\n" not in spec_yaml and spec_yaml.endswith((".yaml", ".yml")) and Path(spec_yaml).is_file():
            return Path(spec_yaml).read_text()
    except OSError:  # e.g. a one-line YAML text too long for a file name
        pass
    return spec_yaml


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _tolerant(default: Any = None) -> Callable:
    """Once the store stops answering, a tracker call is a no-op instead of an error that would stop Tune."""
    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def call(self: "SearchTracker", *args: Any, **kwargs: Any) -> Any:
            if self.offline:
                return default
            try:
                return method(self, *args, **kwargs)
            except Exception as err:  # noqa: BLE001 - sorted by `unreachable`; the rest re-raised
                if not unreachable(err):
                    raise
                self._go_offline(err)
                return default
        return call
    return wrap


@dataclass
class SearchTracker:
    client: Any
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    search_id: str = ""
    parent_status: str = "RUNNING"  # the parent's status when opened (before any reopening)
    sync_hint: str = "tuner sync --storage-path <Tune's storage path>"
    offline: bool = False
    spool: str | None = None  # Tune's experiment directory: where an offline tracker keeps what it could not log
    written: Counter = field(default_factory=Counter)  # what this tracker wrote: runs, params, metrics, ...
    _runs: dict[str, str] = field(default_factory=dict)
    _status: dict[str, str] = field(default_factory=dict)  # trial id -> its run's status as last set
    _last_step: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def open(cls, tracking_uri: str, experiment: str, search_id: str, spec_yaml: str, spec_resolved: dict,
             search_params: dict[str, Any], resume: bool, *, reopen: bool = True) -> "SearchTracker":
        """Create (or, resuming, find) the parent run of a search and log its spec.

        spec_yaml is the search file's text as written (a path to the file is also accepted).
        A found parent is set RUNNING again unless `reopen` is False (`tuner sync`); what it
        already has (params, spec artifacts) is left as it is.
        """
        uri = resolve_tracking_uri(tracking_uri)
        client = connect(uri)
        exp_id = experiment_id(client, experiment, uri)
        found = client.search_runs([exp_id], f"{PARENT_FILTER} and tags.`tuner.search_id` = '{search_id}'",
                                   max_results=1) if resume else []
        tags = {"tuner.role": "search", "tuner.search_id": search_id}
        tags.update({f"tuner.{k}": ",".join(_as_list(search_params[k])) for k in ("metric", "mode")
                     if k in search_params})
        run = found[0] if found else client.create_run(exp_id, tags=tags, run_name=search_id)
        storage = search_params.get("storage", "<Tune's storage path>")  # the experiment directory
        hint = f"tuner sync --storage-path {storage} --experiment {json.dumps(experiment)} --tracking-uri {mask_uri(uri)}"
        tracker = cls(client, uri, exp_id, run.info.run_id, search_id, run.info.status, hint,
                      spool=search_params.get("storage"))
        tracker.written.update(runs=0 if found else 1)  # zero counts vanish in `+written`
        if found and reopen:
            client.update_run(run.info.run_id, status="RUNNING")
            tracker.written.update(statuses=1)
        tracker.written.update(params=log_params(client, tracker.parent_run_id, search_params, run.data.params))
        have = artifact_names(client, tracker.parent_run_id) if found else set()
        for name, text in (("search.yaml", _yaml_text(spec_yaml)),
                           ("spec.json", json.dumps(spec_resolved, indent=2, default=str))):
            if name not in have:
                log_text(client, tracker.parent_run_id, text, name)
                tracker.written.update(artifacts=1)
        return tracker

    def _go_offline(self, err: BaseException) -> None:
        if self.offline:
            return
        self.offline = True
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        print(f"tuner: MLflow at {mask_uri(self.tracking_uri)} stopped answering ({mask_uri(first)}). "
              f"The search goes on without it and Tune keeps every result; once the server is back, "
              f"run:\n  {self.sync_hint}", file=sys.stderr, flush=True)

    def _trial_run(self, trial_id: str, params: dict[str, Any], reopen: bool) -> str:
        if trial_id in self._runs:
            return self._runs[trial_id]
        found = self.client.search_runs(
            [self.experiment_id],
            f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and tags.`tuner.trial_id` = '{trial_id}'",
            max_results=1)
        if found:
            run = found[0]
            self._status[trial_id] = run.info.status
            if reopen:
                self.client.update_run(run.info.run_id, status="RUNNING")
                self._status[trial_id] = "RUNNING"
                self.written.update(statuses=1)
            # Fetched once: re-reported steps at or below these are already in the history.
            self._last_step[trial_id] = {
                key: max(m.step for m in self.client.get_metric_history(run.info.run_id, key))
                for key in run.data.metrics}
        else:
            tags = {"mlflow.parentRunId": self.parent_run_id, "tuner.trial_id": trial_id,
                    "tuner.role": "trial", "tuner.search_id": self.search_id}  # the UI groups by it
            run = self.client.create_run(self.experiment_id, tags=tags, run_name=trial_id)
            self._last_step[trial_id], self._status[trial_id] = {}, "RUNNING"
            self.written.update(runs=1)
        self._runs[trial_id] = run.info.run_id
        self.written.update(params=log_params(self.client, run.info.run_id, params, run.data.params))
        return run.info.run_id

    @_tolerant()
    def trial_started(self, trial_id: str, params: dict[str, Any], *, reopen: bool = True) -> str | None:
        """The trial's nested run: the one already tagged with this trial id, else a new one.

        A found run is set RUNNING again unless `reopen` is False. None once offline.
        """
        return self._trial_run(trial_id, params, reopen)

    def run_status(self, trial_id: str) -> str | None:
        """The status of the trial's run as this tracker last saw or set it."""
        return self._status.get(trial_id)

    @_tolerant(default=0)
    def log_metrics(self, trial_id: str, metrics: dict[str, float], step: int) -> int:
        """The known trial metrics present in `metrics`, at `step`, skipping steps already logged.

        Returns how many values were written.
        """
        from mlflow.entities import Metric

        run_id = self._trial_run(trial_id, {}, reopen=True)
        last = self._last_step[trial_id]
        now = int(time.time() * 1000)
        batch = [Metric(key, float(metrics[key]), now, int(step)) for key in TRIAL_METRICS
                 if isinstance(metrics.get(key), numbers.Real) and not isinstance(metrics[key], bool)
                 and int(step) > last.get(key, -math.inf)]
        if batch:
            self.client.log_batch(run_id, metrics=batch)
            last.update({m.key: int(step) for m in batch})
            self.written.update(metrics=len(batch))
        return len(batch)

    @_tolerant(default=())
    def missing_artifacts(self, trial_id: str, artifact_dir: Path | None) -> list[str]:
        """Files directly in `artifact_dir` that the trial's run does not have yet."""
        return self._missing_artifacts(trial_id, artifact_dir)

    def _missing_artifacts(self, trial_id: str, artifact_dir: Path | None) -> list[str]:
        if artifact_dir is None or not Path(artifact_dir).is_dir():
            return []
        have = artifact_names(self.client, self._trial_run(trial_id, {}, reopen=False))
        return sorted(p.name for p in Path(artifact_dir).iterdir() if p.is_file() and p.name not in have)

    def trial_finished(self, trial_id: str, status: str, artifact_dir: Path | None = None,
                       error: str | None = None) -> None:
        """Ends the trial's run; files of `artifact_dir` it lacks are uploaded, `error` as error.txt.

        Offline, the files are kept for `tuner sync` (the caller may delete them: the plots
        leave with a trial's checkpoints).
        """
        if status not in STATUSES:
            raise ValueError(f"trial status {status!r}: expected one of {', '.join(STATUSES)}")
        self._end_trial(trial_id, status, artifact_dir, error)
        if self.offline and artifact_dir is not None:
            self._keep(trial_id, None, artifact_dir)

    def _keep(self, trial_id: str | None, status: str | None, artifact_dir: Path | None = None) -> None:
        from tuner.tracking.sync import spool

        try:
            if self.spool:
                spool(self.spool, trial_id, status, artifact_dir)
        except Exception as err:  # noqa: BLE001 - losing plots must not stop the search
            print(f"tuner: could not keep {trial_id or 'the search'}'s results for tuner sync: {mask_uri(err)}",
                  file=sys.stderr, flush=True)

    @_tolerant()
    def _end_trial(self, trial_id: str, status: str, artifact_dir: Path | None, error: str | None) -> None:
        run_id = self._trial_run(trial_id, {}, reopen=False)
        for name in self._missing_artifacts(trial_id, artifact_dir):
            self.client.log_artifact(run_id, str(Path(artifact_dir) / name))
            self.written.update(artifacts=1)
        if error:
            log_text(self.client, run_id, error, "error.txt")
            self.written.update(artifacts=1)
        self.client.set_terminated(run_id, status)
        self._status[trial_id] = status
        self.written.update(statuses=1)

    @_tolerant()
    def set_trial_tags(self, trial_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        run_id = self._trial_run(trial_id, {}, reopen=False)
        self.client.log_batch(run_id, tags=[RunTag(str(k), str(v)) for k, v in tags.items()])
        self.written.update(tags=len(tags))

    @_tolerant()
    def log_baselines(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(str(k), float(v), now, 0) for k, v in metrics.items()]
        for start in range(0, len(batch), 1000):
            self.client.log_batch(self.parent_run_id, metrics=batch[start:start + 1000])
        self.written.update(metrics=len(batch))

    def finish(self, table: pd.DataFrame, metric: str | list[str], mode: str | list[str],
               status: str = "FINISHED") -> None:
        """Best trial's metrics (by the first metric), summary.csv and the Pareto plot; ends the parent."""
        self._finish(table, metric, mode, status)
        if self.offline:  # said again at the end, where people look
            self._keep(None, status)
            print(f"tuner: MLflow at {mask_uri(self.tracking_uri)} missed part of this search; once it "
                  f"answers again, run:\n  {self.sync_hint}", file=sys.stderr, flush=True)

    @_tolerant()
    def _finish(self, table: pd.DataFrame, metric: str | list[str], mode: str | list[str], status: str) -> None:
        from mlflow.entities import Metric, RunTag

        from tuner.trainer.plots import plot_pareto

        metrics, modes = _as_list(metric), _as_list(mode)
        tags = [RunTag("tuner.metric", ",".join(metrics)), RunTag("tuner.mode", ",".join(modes))]
        best = _best_row(table, metrics[0], modes[0])
        if best is not None:
            now, logged = int(time.time() * 1000), self.client.get_run(self.parent_run_id).data.metrics
            values = [Metric(f"best_{k}", float(best[k]), now, 0) for k in TRIAL_METRICS
                      if isinstance(best.get(k), numbers.Real) and pd.notna(best[k])
                      and logged.get(f"best_{k}") != float(best[k])]  # a second sync adds no point
            if "trial_id" in best:
                tags.append(RunTag("tuner.best_trial_id", str(best["trial_id"])))
            self.client.log_batch(self.parent_run_id, metrics=values)
            self.written.update(metrics=len(values))
        self.client.log_batch(self.parent_run_id, tags=tags)
        with tempfile.TemporaryDirectory() as tmp:
            table.to_csv(Path(tmp) / "summary.csv", index=False)
            self.client.log_artifact(self.parent_run_id, str(Path(tmp) / "summary.csv"))
            self.written.update(artifacts=1)
            if {"recon_error", "knn_accuracy"} <= set(table.columns):
                plot_pareto(table, Path(tmp) / "pareto.png")
                self.client.log_artifact(self.parent_run_id, str(Path(tmp) / "pareto.png"))
                self.written.update(artifacts=1)
        self.client.set_terminated(self.parent_run_id, status)
        self.parent_status = status
        self.written.update(statuses=1)


def _best_row(table: pd.DataFrame, metric: str, mode: str) -> pd.Series | None:
    if metric not in table or table[metric].notna().sum() == 0:
        return None
    values = pd.to_numeric(table[metric], errors="coerce").reset_index(drop=True)
    return table.iloc[values.idxmax() if mode == "max" else values.idxmin()]  # positional: index may repeat


def __getattr__(name: str) -> Any:
    """The reading side moved to `tuner.tracking.reader`; `tuner.tracking.writer.trials_table` & co. still work."""
    if name in ("trials_table", "print_report", "serve_ui"):
        from tuner import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
