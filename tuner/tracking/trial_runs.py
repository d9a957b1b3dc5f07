"""A search's trial runs, written from the driver: one nested MLflow run per trial, found by its
trial id (`tuner.tracking.runs`), so a resumed search or `tuner sync` reuses it; its params,
metric history (steps already logged are skipped), tags, plots, error and status.
MLflow is imported inside functions so importing this stays cheap.
"""

from __future__ import annotations

import math
import numbers
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.core.metrics import TEST_METRICS, TRIAL_METRICS
from tuner.errors import first_line
from tuner.system.secrets import mask_uri
from tuner.tracking import runs
from tuner.tracking.inputs import DataDescription, log_data
from tuner.tracking.spool import OfflineSpool, tolerant
from tuner.tracking.store import artifact_names, log_params, log_text, unreachable
from tuner.tracking.ui_view import EMBEDDING_KEY


@dataclass
class TrialRuns:
    client: Any
    experiment_id: str
    parent_run_id: str
    search_id: str
    spool: OfflineSpool
    written: Counter  # shared with the parent run: what the search's writer wrote
    data: DataDescription | None = None  # the search's data: each new run logs it as its input
    _runs: dict[str, str] = field(default_factory=dict)
    # trial id -> its run's status as last set
    _status: dict[str, str] = field(default_factory=dict)
    _last_step: dict[str, dict[str, int]] = field(default_factory=dict)

    def _run(
        self, trial_id: str, params: dict[str, Any], reopen: bool, run_name: str | None = None
    ) -> str:
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
                for key in run.data.metrics
            }
        else:
            tags = runs.trial_tags(self.parent_run_id, self.search_id, trial_id)
            run = self.client.create_run(
                self.experiment_id, tags=tags, run_name=run_name or trial_id
            )
            self._last_step[trial_id], self._status[trial_id] = {}, "RUNNING"
            self.written.update(runs=1)
            if self.data is not None:
                log_data(self.client, run.info.run_id, self.data, trial=True)
        self._runs[trial_id] = run.info.run_id
        self.written.update(
            params=log_params(self.client, run.info.run_id, params, run.data.params)
        )
        return run.info.run_id

    @tolerant()
    def started(
        self,
        trial_id: str,
        params: dict[str, Any],
        *,
        reopen: bool = True,
        run_name: str | None = None,
    ) -> str | None:
        """The trial's nested run: the one already tagged with this trial id, else a new one named
        `run_name` (default: the trial id). A found run is set RUNNING again unless `reopen` is
        False. None once offline.
        """
        return self._run(trial_id, params, reopen, run_name)

    def end_running(self, status: str) -> list[str]:
        """Every run this opened that is still RUNNING ends `status`; returns the ids of all it
        opened."""
        for run_id in self._runs.values():
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, status)
        self._status.update({t: status for t, s in self._status.items() if s == "RUNNING"})
        return list(self._runs.values())

    def run_status(self, trial_id: str) -> str | None:
        """The status of the trial's run as last seen or set here."""
        return self._status.get(trial_id)

    @tolerant(default=0)
    def log_metrics(self, trial_id: str, metrics: dict[str, float], step: int) -> int:
        """The known trial metrics (and test_ figures) present in `metrics`, at `step`, skipping
        steps already logged.

        Returns how many values were written. The run's status stays: only a trial's start and
        end set it. (The test_ figures of a trial that ended under an earlier driver of a resumed
        search go to its FINISHED run, which must stay FINISHED.)
        """
        from mlflow.entities import Metric

        run_id = self._run(trial_id, {}, reopen=False)
        last = self._last_step[trial_id]
        now = int(time.time() * 1000)
        batch = [
            Metric(key, float(metrics[key]), now, int(step))
            for key in (*TRIAL_METRICS, *TEST_METRICS)
            if isinstance(metrics.get(key), numbers.Real)
            and not isinstance(metrics[key], bool)
            and int(step) > last.get(key, -math.inf)
        ]
        if batch:
            self.client.log_batch(run_id, metrics=batch)
            last.update({m.key: int(step) for m in batch})
            self.written.update(metrics=len(batch))
        return len(batch)

    @tolerant(default=())
    def missing_artifacts(self, trial_id: str, artifact_dir: Path | None) -> list[str]:
        """Files directly in `artifact_dir` that the trial's run does not have yet."""
        return self._missing_artifacts(trial_id, artifact_dir)

    def _missing_artifacts(self, trial_id: str, artifact_dir: Path | None) -> list[str]:
        if artifact_dir is None or not Path(artifact_dir).is_dir():
            return []
        have = artifact_names(self.client, self._run(trial_id, {}, reopen=False))
        return sorted(
            p.name for p in Path(artifact_dir).iterdir() if p.is_file() and p.name not in have
        )

    @tolerant()
    def finished(
        self, trial_id: str, status: str, artifact_dir: Path | None, error: str | None
    ) -> None:
        """Ends the trial's run; files of `artifact_dir` it lacks are uploaded, `error` as
        error.txt."""
        run_id = self._run(trial_id, {}, reopen=False)
        for name in self._missing_artifacts(trial_id, artifact_dir):
            self.client.log_artifact(run_id, str(Path(artifact_dir) / name))
            self.written.update(artifacts=1)
            # also as an image by step, which MLflow's image chart pages through
            if name == "embedding.png":
                self._log_embedding(
                    run_id, Path(artifact_dir) / name, self._last_step.get(trial_id, {})
                )
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
                self.client.log_image(
                    run_id,
                    image.convert("RGB"),
                    key=EMBEDDING_KEY,
                    step=max(last_step.values(), default=0),
                    synchronous=True,
                )
        except Exception as err:  # noqa: BLE001 - the plot itself is logged; the image chart's copy is a help
            if unreachable(err):
                raise
            print(
                f"tuner: the embedding image by step was not logged: {mask_uri(first_line(err))}",
                file=sys.stderr,
                flush=True,
            )
            return
        self.written.update(artifacts=1)

    @tolerant()
    def set_tags(self, trial_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        run_id = self._run(trial_id, {}, reopen=False)
        self.client.log_batch(run_id, tags=[RunTag(str(k), str(v)) for k, v in tags.items()])
        self.written.update(tags=len(tags))
