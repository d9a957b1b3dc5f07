"""Tune events -> the search's parts, on the driver: one nested MLflow run per trial, found by trial
id.

`TrackingCallback` only forwards: each trial's record to the ledger (runner/trials.py), its runs
to the tracker, its lines to the console (runner/console.py), its ended checkpoints to the
cleaner (runner/checkpoints.py), the last trials' free cores to model logging's warm-up
(runner/models_step.py), the nodes it ran on to its run's tags (`NodeTags`). Also where what
trials leave in storage is collected: the plots in a trial's last checkpoint (whichever node
wrote it), the error of a failed trial.
"""

from __future__ import annotations

import os
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from tuner.core.selection import error_summary
from tuner.runner.checkpoints import CHECKPOINT_GRACE_S, CheckpointCleaner, storage_step
from tuner.runner.console import TrialLines
from tuner.runner.models_step import ModelWarmUp
from tuner.runner.trials import TrialLedger
from tuner.system.disk import is_disk_full
from tuner.system.tune_storage import PLOTS_DIR, download_dir
from tuner.tracking import tags
from tuner.tracking.writer import SearchTracker


@dataclass
class NodeTags:
    """Each trial's run tagged with the nodes it ran on, in order (more than one when it moved)."""

    tracker: SearchTracker
    nodes: dict[str, list[str]] = field(default_factory=dict)  # trial id -> nodes it ran on

    def saw(self, trial_id: str, node: str) -> None:
        seen = self.nodes.setdefault(trial_id, [])
        if seen[-1:] != [node]:
            seen.append(node)
            self.tracker.set_trial_tags(trial_id, {tags.NODE: ",".join(seen)})


class TrackingCallback(tune.Callback):
    """Tune events -> the tracker, the ledger, the console, the cleaner and the warm-up.

    It lives on the driver and holds those parts itself. Tune pickles its callbacks into its
    saved state (tuner.pkl) when the Tuner is built: only the search id goes there, and on
    --resume the restored copy is replaced by this search's live one (runner/tune_setup.py).
    """

    def __init__(
        self,
        search_id: str,
        tracker: SearchTracker,
        ledger: TrialLedger,
        lines: TrialLines | None = None,
        warm_up: ModelWarmUp | None = None,
    ) -> None:
        self.search_id, self.tracker, self.ledger = search_id, tracker, ledger
        self.lines = lines or TrialLines()
        self.warm_up = warm_up or ModelWarmUp(ledger.spec)
        self.cleaner = CheckpointCleaner()
        self.nodes = NodeTags(tracker)
        self.disk_full = False  # a trial found no space left: the search stops, resumable
        self.stopping = False

    def __getstate__(self) -> dict[str, Any]:
        return {"search_id": self.search_id}  # no client, thread or console in Tune's saved state

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self.ledger.record(trial)
        self.tracker.trial_started(trial.trial_id, dict(record.params), run_name=record.run_name)
        # The runs of one configuration (repeats: one seed each) share it; reports group by it.
        self.tracker.set_trial_tags(trial.trial_id, {tags.CONFIG_ID: record.config_id})
        self.ledger.open.add(trial.trial_id)
        self.lines.trial_started(trial.trial_id)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self.tracker.log_metrics(trial.trial_id, result, step=int(result.get("iteration", 0)))
        self.nodes.saw(trial.trial_id, node_name(result))
        self.lines.trial_result(trial.config, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id not in self.ledger.open and "iteration" not in trial.last_result:
            return  # a pending trial dropped at Ctrl-C: it never ran, so it gets no run
        self._end(trial, self.ledger.ended_status(trial, error=False))
        self.warm_up.last_trials_running(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = _error_text(trial)
        # not the trial's fault: KILLED, and --resume retries it once there is space
        if is_disk_full(error):
            self.disk_full = True
            self._end(trial, "KILLED")
            self.stop_if_disk_full()
            return
        self._end(trial, self.ledger.ended_status(trial, error=True), error=error)
        self.warm_up.last_trials_running(trials)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.stop_if_disk_full()
        self.cleaner.delete(ended_before_s=CHECKPOINT_GRACE_S)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.ledger.trials = list(trials)

    def _end(self, trial: Any, status: str, error: str | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            plots = storage_step(f"fetch {trial.trial_id}'s plots", _fetch_plots, trial, Path(tmp))
            self.tracker.trial_finished(trial.trial_id, status, plots, error=error)
        self.ledger.open.discard(trial.trial_id)
        self.ledger.ended[trial.trial_id] = status
        self.lines.trial_ended(trial.trial_id, status)
        # resume never restores an ended trial; a failed one it retries
        if status != "FAILED" and not self.disk_full:
            self.cleaner.trial_ended(trial, status)

    def stop_if_disk_full(self) -> None:
        """A trial's or the store's filesystem is full: stop Tune as Ctrl-C does (SIGUSR1 is Tune's
        own stop signal), so it saves its state and the search ends with one message."""
        if (self.disk_full or self.tracker.disk_full) and not self.stopping:
            self.stopping = True
            # Only where Tune handles it (fit in the main thread): SIGUSR1's default ends the
            # process.
            if callable(signal.getsignal(signal.SIGUSR1)):
                os.kill(os.getpid(), signal.SIGUSR1)


def node_name(result: dict[str, Any]) -> str:
    """`<ip>/<node id>`: the IP finds the machine, the id the Ray node (several may share a
    machine)."""
    return f"{result.get('node_ip', '?')}/{result.get('node_id', '?')}"


def _fetch_plots(trial: Any, local: Path) -> Path | None:
    """The plots a finished trial left in its last checkpoint, copied from storage to `local`."""
    ckpt = trial.checkpoint
    if ckpt is None or not download_dir(ckpt.filesystem, f"{ckpt.path}/{PLOTS_DIR}", local):
        return None
    return local


def _error_text(trial: Any) -> str:
    """The trial's traceback; at this point it sits in the driver's staging copy, not yet in
    storage."""
    local = trial.error_file
    text = (
        Path(local).read_text() if local and Path(local).is_file() else str(trial.get_error() or "")
    )
    return (
        error_summary(text) if text.strip() else f"trial {trial.trial_id} failed (see {trial.path})"
    )
