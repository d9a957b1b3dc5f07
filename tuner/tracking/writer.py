"""MLflow logging from the driver: the one writer. Reading back lives in `tuner.tracking.reader`.

`SearchTracker` is what the search, its callback and `tuner sync` hold: a thin front over the
parent run (`parent.ParentRun`), the trial runs (`trial_runs.TrialRuns`) and the offline spool
(`spool.OfflineSpool`), which share one client and one count of what was written.
Everything goes through an explicit `MlflowClient(tracking_uri=...)`: the fluent API's
global state (`mlflow.set_experiment` exports MLFLOW_EXPERIMENT_ID) misroutes Ray's runs.
Runs are found by their tags (see `runs`), so a resumed search reuses its runs.
A store that stops answering mid-search turns the tracker offline: the search goes on,
Tune keeps every result, and `tuner sync` writes the rest later (see `tuner.tracking.sync`).
MLflow is imported inside functions so `import tuner.tracking.writer` stays cheap.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.core.selection import RUN_STATUSES
from tuner.system.secrets import mask_uri
from tuner.system.tune_storage import ExperimentDir
from tuner.tracking.inputs import DataDescription
from tuner.tracking.parent import ParentRun, as_list
from tuner.tracking.spool import OfflineSpool, tolerant
from tuner.tracking.store import connect, experiment_id, resolve_tracking_uri
from tuner.tracking.trial_runs import TrialRuns


@dataclass
class SearchTracker:
    parent: ParentRun
    trials: TrialRuns
    spool: OfflineSpool

    @classmethod
    def open(
        cls,
        tracking_uri: str,
        experiment: str,
        search_id: str,
        spec_yaml: str,
        spec_resolved: dict,
        search_params: dict[str, Any],
        resume: bool,
        *,
        reopen: bool = True,
        storage: ExperimentDir | None = None,
    ) -> SearchTracker:
        """Create (or, resuming, find) the parent run of a search and log its spec.

        spec_yaml is the search file's text as written (a path to the file is also accepted).
        A found parent is set RUNNING again unless `reopen` is False (`tuner sync`); what it
        already has (params, spec artifacts) is left as it is. `storage` is the search's Tune
        directory, where an offline tracker keeps what it could not log (None: nowhere).
        """
        uri = resolve_tracking_uri(tracking_uri)
        client = connect(uri)
        exp_id = experiment_id(client, experiment, uri)
        shown = mask_uri(storage.uri) if storage else "<Tune's storage path>"
        hint = (
            f"tuner sync --storage-path {shown} --experiment {json.dumps(experiment)} "
            f"--tracking-uri {mask_uri(uri)}"
        )
        spool, written = OfflineSpool(uri, hint, storage), Counter()
        parent = ParentRun.open(
            client,
            exp_id,
            search_id,
            spec_yaml,
            spec_resolved,
            search_params,
            resume,
            reopen,
            spool,
            written,
        )
        return cls(
            parent, TrialRuns(client, exp_id, parent.run_id, search_id, spool, written), spool
        )

    # What call sites read: the store, the parent run, the state of the link.
    client = property(lambda self: self.parent.client)
    tracking_uri = property(lambda self: self.spool.tracking_uri)
    experiment_id = property(lambda self: self.parent.experiment_id)
    parent_run_id = property(lambda self: self.parent.run_id)
    search_id = property(lambda self: self.parent.search_id)
    parent_status = property(lambda self: self.parent.status)
    # runs, params, metrics, ... written so far
    written = property(lambda self: self.parent.written)
    offline = property(lambda self: self.spool.offline)
    disk_full = property(lambda self: self.spool.disk_full)  # offline because a filesystem is full
    storage = property(lambda self: self.spool.storage)

    def trial_started(
        self,
        trial_id: str,
        params: dict[str, Any],
        *,
        reopen: bool = True,
        run_name: str | None = None,
    ) -> str | None:
        """The trial's run id (see `TrialRuns.started`); None once offline."""
        return self.trials.started(trial_id, params, reopen=reopen, run_name=run_name)

    def log_metrics(self, trial_id: str, metrics: dict[str, float], step: int) -> int:
        return self.trials.log_metrics(trial_id, metrics, step)

    def set_trial_tags(self, trial_id: str, tags: dict[str, str]) -> None:
        self.trials.set_tags(trial_id, tags)

    def missing_artifacts(self, trial_id: str, artifact_dir: Path | None) -> list[str]:
        return self.trials.missing_artifacts(trial_id, artifact_dir)

    def run_status(self, trial_id: str) -> str | None:
        return self.trials.run_status(trial_id)

    def trial_finished(
        self, trial_id: str, status: str, artifact_dir: Path | None = None, error: str | None = None
    ) -> None:
        """Ends the trial's run; files of `artifact_dir` it lacks are uploaded, `error` as
        error.txt.

        Offline, the files are kept for `tuner sync` (the caller may delete them: the plots
        leave with a trial's checkpoints).
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"trial status {status!r}: expected one of {', '.join(RUN_STATUSES)}")
        self.trials.finished(trial_id, status, artifact_dir, error)
        if self.offline and artifact_dir is not None:
            self.spool.keep(trial_id, None, artifact_dir)

    @tolerant()
    def end_running(self, status: str = "KILLED") -> None:
        """Every run this tracker opened that is still RUNNING, the parent included, ends `status`:
        an interrupted `tuner sync` leaves nothing that looks live (a second sync completes it)."""
        self.trials.end_running(status)
        if self.client.get_run(self.parent_run_id).info.status == "RUNNING":
            self.client.set_terminated(self.parent_run_id, status)

    def set_data(self, data: DataDescription) -> None:
        """The search's data, logged now on the parent run and on each trial run created from now
        on."""
        self.trials.data = data
        self.parent.set_data(data)

    def log_baselines(self, metrics: dict[str, float]) -> None:
        self.parent.log_baselines(metrics)

    def finish(
        self,
        table: pd.DataFrame,
        metric: str | list[str],
        mode: str | list[str],
        status: str = "FINISHED",
    ) -> None:
        """Best trial's metrics (by the first metric), summary.csv and the Pareto plot; ends the
        parent."""
        self.parent.finish(table, as_list(metric), as_list(mode), status)
        self.spool.search_ended(status)
