"""MLflow logging from the driver: the one writer. Reading back lives in `tuner.tracking.reader`.

Everything goes through an explicit `MlflowClient(tracking_uri=...)`: the fluent API's
global state (`mlflow.set_experiment` exports MLFLOW_EXPERIMENT_ID) misroutes Ray's runs.
Runs are found by their tags (see `runs`), so a resumed search reuses its runs.
A store that stops answering mid-search turns the tracker offline: the search goes on,
Tune keeps every result, and `tuner sync` writes the rest later (see `tuner.tracking.sync`).
MLflow is imported inside functions so `import tuner.tracking.writer` stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import numbers
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from tuner.disk import is_disk_full
from tuner.errors import first_line
from tuner.outcome import RUN_STATUSES
from tuner.storage import ExperimentDir, spool
from tuner.tracking import runs
from tuner.tracking.store import (artifact_names, connect, experiment_id, log_params, log_text,
                                  resolve_tracking_uri, unreachable)
from tuner.secrets import mask_uri
from tuner.tracking.parent import as_list, log_search_start, log_search_summary
from tuner.tracking.inputs import DataDescription, log_data
from tuner.tracking.search_view import SEARCHED_PREFIX, log_search_view
from tuner.tracking.tags import SEARCH_PARAM_TAGS, SEARCHED
from tuner.tracking.ui_view import EMBEDDING_KEY
from tuner.trainer.metrics import TEST_METRICS, TRIAL_METRICS


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
                if not (unreachable(err) or is_disk_full(err)):
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
    disk_full: bool = False  # offline because the store's (or its artifacts') filesystem is full
    storage: ExperimentDir | None = None  # where an offline tracker keeps what it could not log
    data: DataDescription | None = None  # the search's data: each new run logs it as its input
    written: Counter = field(default_factory=Counter)  # what this tracker wrote: runs, params, metrics, ...
    _runs: dict[str, str] = field(default_factory=dict)
    _status: dict[str, str] = field(default_factory=dict)  # trial id -> its run's status as last set
    _last_step: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def open(cls, tracking_uri: str, experiment: str, search_id: str, spec_yaml: str, spec_resolved: dict,
             search_params: dict[str, Any], resume: bool, *, reopen: bool = True,
             storage: ExperimentDir | None = None) -> "SearchTracker":
        """Create (or, resuming, find) the parent run of a search and log its spec.

        spec_yaml is the search file's text as written (a path to the file is also accepted).
        A found parent is set RUNNING again unless `reopen` is False (`tuner sync`); what it
        already has (params, spec artifacts) is left as it is. `storage` is the search's Tune
        directory, where an offline tracker keeps what it could not log (None: nowhere).
        """
        uri = resolve_tracking_uri(tracking_uri)
        client = connect(uri)
        exp_id = experiment_id(client, experiment, uri)
        found = runs.parent_run(client, [exp_id], search_id) if resume else None
        tags = runs.parent_tags(search_id)
        tags.update({tag: ",".join(as_list(search_params[k])) for k, tag in SEARCH_PARAM_TAGS.items()
                     if k in search_params})
        # The searched settings in the file's order (params come back sorted by name): the UI view's columns.
        tags[SEARCHED] = ",".join(k[len(SEARCHED_PREFIX):] for k in search_params if k.startswith(SEARCHED_PREFIX))
        run = found or client.create_run(exp_id, tags=tags, run_name=search_id)
        shown = mask_uri(storage.uri) if storage else "<Tune's storage path>"
        hint = f"tuner sync --storage-path {shown} --experiment {json.dumps(experiment)} --tracking-uri {mask_uri(uri)}"
        tracker = cls(client, uri, exp_id, run.info.run_id, search_id, run.info.status, hint, storage=storage)
        tracker.written.update(runs=0 if found else 1)  # zero counts vanish in `+written`
        if found and reopen:
            client.update_run(run.info.run_id, status="RUNNING")
            tracker.written.update(statuses=1)
        try:
            tracker.written.update(log_search_start(client, run, spec_yaml, spec_resolved, search_params, bool(found)))
        except BaseException:  # a parent left RUNNING would look like a live search forever
            with contextlib.suppress(Exception):
                client.set_terminated(run.info.run_id, "FAILED")
            raise
        return tracker

    def _go_offline(self, err: BaseException) -> None:
        if self.offline:
            return
        self.offline = True
        if is_disk_full(err):  # the search stops and names the filesystem: nothing to say here
            self.disk_full = True
            return
        first = first_line(err)[:300]
        print(f"tuner: MLflow at {mask_uri(self.tracking_uri)} stopped answering ({mask_uri(first)}). "
              f"The search goes on without it and Tune keeps every result; once the server is back, "
              f"run:\n  {self.sync_hint}", file=sys.stderr, flush=True)

    def _trial_run(self, trial_id: str, params: dict[str, Any], reopen: bool, run_name: str | None = None) -> str:
        if trial_id in self._runs:
            return self._runs[trial_id]
        run = runs.trial_run(self.client, self.experiment_id, self.parent_run_id, trial_id)
        if run is not None:
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
            tags = runs.trial_tags(self.parent_run_id, self.search_id, trial_id)
            run = self.client.create_run(self.experiment_id, tags=tags, run_name=run_name or trial_id)
            self._last_step[trial_id], self._status[trial_id] = {}, "RUNNING"
            self.written.update(runs=1)
            if self.data is not None:
                log_data(self.client, run.info.run_id, self.data, trial=True)
        self._runs[trial_id] = run.info.run_id
        self.written.update(params=log_params(self.client, run.info.run_id, params, run.data.params))
        return run.info.run_id

    @_tolerant()
    def trial_started(self, trial_id: str, params: dict[str, Any], *, reopen: bool = True,
                      run_name: str | None = None) -> str | None:
        """The trial's nested run: the one already tagged with this trial id, else a new one named
        `run_name` (default: the trial id). A found run is set RUNNING again unless `reopen` is False.
        None once offline.
        """
        return self._trial_run(trial_id, params, reopen, run_name)

    @_tolerant()
    def end_running(self, status: str = "KILLED") -> None:
        """Every run this tracker opened that is still RUNNING, the parent included, ends `status`:
        an interrupted `tuner sync` leaves nothing that looks live (a second sync completes it)."""
        for run_id in [*self._runs.values(), self.parent_run_id]:
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, status)
        self._status.update({t: status for t, s in self._status.items() if s == "RUNNING"})

    def run_status(self, trial_id: str) -> str | None:
        """The status of the trial's run as this tracker last saw or set it."""
        return self._status.get(trial_id)

    @_tolerant(default=0)
    def log_metrics(self, trial_id: str, metrics: dict[str, float], step: int) -> int:
        """The known trial metrics (and test_ figures) present in `metrics`, at `step`, skipping
        steps already logged.

        Returns how many values were written. The run's status stays: only a trial's start and
        end set it. (The test_ figures of a trial that ended under an earlier driver of a resumed
        search go to its FINISHED run, which must stay FINISHED.)
        """
        from mlflow.entities import Metric

        run_id = self._trial_run(trial_id, {}, reopen=False)
        last = self._last_step[trial_id]
        now = int(time.time() * 1000)
        batch = [Metric(key, float(metrics[key]), now, int(step)) for key in (*TRIAL_METRICS, *TEST_METRICS)
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
        if status not in RUN_STATUSES:
            raise ValueError(f"trial status {status!r}: expected one of {', '.join(RUN_STATUSES)}")
        self._end_trial(trial_id, status, artifact_dir, error)
        if self.offline and artifact_dir is not None:
            self._keep(trial_id, None, artifact_dir)

    def _keep(self, trial_id: str | None, status: str | None, artifact_dir: Path | None = None) -> None:
        try:
            if self.storage is not None:
                spool(self.storage, trial_id, status, artifact_dir)
        except Exception as err:  # noqa: BLE001 - losing plots must not stop the search
            print(f"tuner: could not keep {trial_id or 'the search'}'s results for tuner sync: {mask_uri(err)}",
                  file=sys.stderr, flush=True)

    @_tolerant()
    def _end_trial(self, trial_id: str, status: str, artifact_dir: Path | None, error: str | None) -> None:
        run_id = self._trial_run(trial_id, {}, reopen=False)
        for name in self._missing_artifacts(trial_id, artifact_dir):
            self.client.log_artifact(run_id, str(Path(artifact_dir) / name))
            self.written.update(artifacts=1)
            if name == "embedding.png":  # also as an image by step, which MLflow's image chart pages through
                self._log_embedding(run_id, Path(artifact_dir) / name, self._last_step.get(trial_id, {}))
        if error:
            log_text(self.client, run_id, error, "error.txt")
            self.written.update(artifacts=1)
        self.client.set_terminated(run_id, status)
        self._status[trial_id] = status
        self.written.update(statuses=1)

    def _log_embedding(self, run_id: str, path: Path, last_step: dict[str, int]) -> None:
        from PIL import Image

        try:
            with Image.open(path) as image:
                self.client.log_image(run_id, image.convert("RGB"), key=EMBEDDING_KEY,
                                      step=max(last_step.values(), default=0), synchronous=True)
        except Exception as err:  # noqa: BLE001 - the plot itself is logged; the image chart's copy is a help
            if unreachable(err):
                raise
            print(f"tuner: the embedding image by step was not logged: {mask_uri(first_line(err))}",
                  file=sys.stderr, flush=True)
            return
        self.written.update(artifacts=1)

    @_tolerant()
    def set_data(self, data: DataDescription) -> None:
        """The search's data, logged now on the parent run and on each trial run created from now on."""
        self.data = data
        log_data(self.client, self.parent_run_id, data, trial=False)

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
        if self.offline and not self.disk_full:  # said again at the end, where people look
            self._keep(None, status)
            print(f"tuner: MLflow at {mask_uri(self.tracking_uri)} missed part of this search; once it "
                  f"answers again, run:\n  {self.sync_hint}", file=sys.stderr, flush=True)

    @_tolerant()
    def _finish(self, table: pd.DataFrame, metric: str | list[str], mode: str | list[str], status: str) -> None:
        self.written.update(log_search_summary(self.client, self.parent_run_id, table, as_list(metric), as_list(mode)))
        if len(table):
            try:
                self.written.update(artifacts=log_search_view(self.client, self.experiment_id, self.parent_run_id,
                                                              table, as_list(metric), as_list(mode)))
            except Exception as err:  # noqa: BLE001 - the comparison view is a help: its failure ends no search
                if unreachable(err):
                    raise
                print(f"tuner: the search's UI view, importances or report.html were not logged: "
                      f"{mask_uri(first_line(err))}", file=sys.stderr, flush=True)
        self.client.set_terminated(self.parent_run_id, status)
        self.parent_status = status
        self.written.update(statuses=1)
