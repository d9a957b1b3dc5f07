"""Tune events -> SearchTracker, on the driver: one nested MLflow run per trial, found by trial id.

Also where what trials leave in storage is collected: the plots in a trial's last checkpoint
(whichever node wrote it), the node it ran on, the error of a failed trial.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ray import tune

from tuner.disk import is_disk_full
from tuner.outcome import UNFINISHED, config_id, error_summary, trial_status
from tuner.runner.console import SearchProgress
from tuner.runner.setup_clock import SetupClock
from tuner.space.spec import SearchSpec
from tuner.storage import PLOTS_DIR, delete_checkpoints, download_dir
from tuner.secrets import mask_uri
from tuner.tracking import tags
from tuner.tracking.writer import SearchTracker


@dataclass
class Session:
    """What the callback needs. Tune pickles callbacks into its state (tuner.pkl), so the
    callback holds only the search id and finds this live session by it."""

    tracker: SearchTracker
    spec: SearchSpec
    open_trials: set[str] = field(default_factory=set)  # started in this run, not ended
    ended: dict[str, str] = field(default_factory=dict)  # trial id -> status, this run
    nodes: dict[str, list[str]] = field(default_factory=dict)  # trial id -> nodes it ran on, in order
    trials: list = field(default_factory=list)
    progress: SearchProgress | None = None  # the console's live line (None: quiet, or Tune's own output)
    clock: SetupClock | None = None  # the setup's laps (None: quiet)
    warming: threading.Thread | None = None  # model logging's warm-up, on the last trials' free cores
    # Ended trials' checkpoints to delete: (monotonic end time, trial, the checkpoint that stays).
    unneeded_checkpoints: list[tuple[float, Any, str | None]] = field(default_factory=list)
    disk_full: bool = False  # a trial found no space left: the search stops, resumable
    stopping: bool = False

    def stop_if_disk_full(self) -> None:
        """A trial's or the store's filesystem is full: stop Tune as Ctrl-C does (SIGUSR1 is Tune's
        own stop signal), so it saves its state and the search ends with one message."""
        if (self.disk_full or self.tracker.disk_full) and not self.stopping:
            self.stopping = True
            # Only where Tune handles it (fit in the main thread): SIGUSR1's default ends the process.
            if callable(signal.getsignal(signal.SIGUSR1)):
                os.kill(os.getpid(), signal.SIGUSR1)

    def last_trials_running(self, trials: list) -> None:
        """Once every trial has started and one has ended, a core stays free till the search
        ends: model logging's one-time cost (runner/models_step.py) is paid there, not after."""
        if self.warming is None and self.spec.log_models != "none" and len(trials) >= self.spec.n_trials \
                and not any(t.status == "PENDING" for t in trials):
            from tuner.tracking.models import warm_up_model_logging

            self.warming = threading.Thread(target=_quietly, args=(warm_up_model_logging,), daemon=True,
                                            name="tuner-warm-up")
            self.warming.start()

    def warmed_up(self) -> None:
        """Wait for the warm-up: torch.export in two threads at once is not something to rely on."""
        if self.warming is not None:
            self.warming.join()

    def trial_started(self, trial_id: str) -> None:
        self.open_trials.add(trial_id)
        line = self.clock.first_trial() if self.clock is not None else None
        if line and self.progress is not None:
            self.progress.bar.write(line, file=sys.stderr)  # above the live line, which stays
        elif line:
            print(line, file=sys.stderr, flush=True)
        if self.progress is not None:
            self.progress.trial_started(trial_id)

    def end(self, trial: Any, status: str, error: str | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            plots = _storage_step(f"fetch {trial.trial_id}'s plots", _fetch_plots, trial, Path(tmp))
            self.tracker.trial_finished(trial.trial_id, status, plots, error=error)
        self.open_trials.discard(trial.trial_id)
        self.ended[trial.trial_id] = status
        if self.progress is not None:
            self.progress.trial_ended(trial.trial_id, status)
        if status != "FAILED" and not self.disk_full:  # resume never restores an ended trial; a failed one it retries
            self.unneeded_checkpoints.append((time.monotonic(), trial, kept_checkpoint(trial, status)))

    def delete_unneeded_checkpoints(self, ended_before_s: float = 0.0) -> None:
        """Delete the checkpoints of trials that ended at least `ended_before_s` ago.

        Not at once: until Tune's saved state (written every few seconds, uploaded in the
        background) records the trial as ended, a crash resumes it from the checkpoint that state
        names, an earlier one. With no wait only once Tune has saved its final state."""
        now = time.monotonic()
        due = [entry for entry in self.unneeded_checkpoints if now - entry[0] >= ended_before_s]
        self.unneeded_checkpoints = [entry for entry in self.unneeded_checkpoints if now - entry[0] < ended_before_s]
        for _, trial, keep in due:
            _storage_step(f"delete {trial.trial_id}'s checkpoints", delete_checkpoints,
                          trial.storage.storage_filesystem, trial.path, keep)

    def saw_node(self, trial_id: str, node: str) -> None:
        """Tag the trial's run with the nodes it ran on (more than one when it moved)."""
        seen = self.nodes.setdefault(trial_id, [])
        if seen[-1:] != [node]:
            seen.append(node)
            self.tracker.set_trial_tags(trial_id, {tags.NODE: ",".join(seen)})


def kept_checkpoint(trial: Any, status: str) -> str | None:
    """A finished trial's last checkpoint stays: at the end of the search (also after --resume)
    the driver reads the selected trials' final state for the test split (runner/final_test.py)
    and for their models (runner/models_step.py). Only those chosen then are needed, but which
    they are is known only once every trial has ended."""
    if status != "FINISHED" or trial.checkpoint is None:
        return None
    return trial.checkpoint.path


SESSIONS: dict[str, Session] = {}  # search id -> the live session

# How long an ended trial's checkpoints outlive it: ten of Tune's state saves (TUNE_GLOBAL_CHECKPOINT_S,
# 3 s, runner/tune_setup.py), so the saved state has recorded the end before they go.
CHECKPOINT_GRACE_S = 30.0


class TrackingCallback(tune.Callback):
    """Tune events -> SearchTracker: one nested MLflow run per trial, found by trial id."""

    def __init__(self, search_id: str) -> None:
        self.search_id = search_id

    @property
    def session(self) -> Session:
        return SESSIONS[self.search_id]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        s = self.session
        cfg = s.spec.trial_config(trial.config)
        config = cfg.to_dict()
        s.tracker.trial_started(trial.trial_id, config, run_name=s.spec.run_name(cfg))
        # The runs of one configuration (repeats: one seed each) share it; reports group by it.
        s.tracker.set_trial_tags(trial.trial_id, {tags.CONFIG_ID: config_id(config)})
        s.trial_started(trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        s = self.session
        s.tracker.log_metrics(trial.trial_id, result, step=int(result.get("iteration", 0)))
        s.saw_node(trial.trial_id, node_name(result))
        if s.progress is not None:
            s.progress.trial_result(trial.config, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id not in self.session.open_trials and "iteration" not in trial.last_result:
            return  # a pending trial dropped at Ctrl-C: it never ran, so it gets no run
        self.session.end(trial, ended_status(self.session.spec, trial, error=False))
        self.session.last_trials_running(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = _error_text(trial)
        if is_disk_full(error):  # not the trial's fault: KILLED, and --resume retries it once there is space
            self.session.disk_full = True
            self.session.end(trial, "KILLED")
            self.session.stop_if_disk_full()
            return
        self.session.end(trial, ended_status(self.session.spec, trial, error=True), error=error)
        self.session.last_trials_running(trials)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.session.stop_if_disk_full()
        self.session.delete_unneeded_checkpoints(ended_before_s=CHECKPOINT_GRACE_S)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.session.trials = list(trials)


def node_name(result: dict[str, Any]) -> str:
    """`<ip>/<node id>`: the IP finds the machine, the id the Ray node (several may share a machine)."""
    return f"{result.get('node_ip', '?')}/{result.get('node_id', '?')}"


def _fetch_plots(trial: Any, local: Path) -> Path | None:
    """The plots a finished trial left in its last checkpoint, copied from storage to `local`."""
    ckpt = trial.checkpoint
    if ckpt is None or not download_dir(ckpt.filesystem, f"{ckpt.path}/{PLOTS_DIR}", local):
        return None
    return local


def _quietly(step: Callable[[], Any]) -> None:
    """A warm-up that fails costs nothing: the real call pays, and reports, whatever it was."""
    try:
        step()
    except Exception:  # noqa: BLE001, S110 - see above
        pass


def _storage_step(what: str, step: Callable[..., Any], *args: Any) -> Any:
    """A storage hiccup costs a trial's plots or disk space, never the search (Tune stops on a
    callback's exception)."""
    try:
        return step(*args)
    except OSError as err:  # pyarrow's I/O errors are OSErrors
        print(f"tuner: could not {what} in storage: {mask_uri(err)}", file=sys.stderr, flush=True)
        return None


def _error_text(trial: Any) -> str:
    """The trial's traceback; at this point it sits in the driver's staging copy, not yet in storage."""
    local = trial.error_file
    text = Path(local).read_text() if local and Path(local).is_file() else str(trial.get_error() or "")
    return error_summary(text) if text.strip() else f"trial {trial.trial_id} failed (see {trial.path})"


def ended_status(spec: SearchSpec, trial: Any, error: bool) -> str:
    last = trial.last_result.get("iteration", 0)
    iterations = spec.trial_config(trial.config).iterations
    return trial_status(last, iterations, error=error, reported=True)  # type: ignore[return-value]


def row_status(spec: SearchSpec, session: Session, trial: Any) -> str:
    """What ended in this run says itself; Tune marks interrupted trials TERMINATED too."""
    if trial.trial_id in session.ended:
        return session.ended[trial.trial_id]
    if trial.trial_id in session.open_trials or "iteration" not in trial.last_result:  # never reported
        return UNFINISHED
    if trial.status in ("ERROR", "TERMINATED"):
        return ended_status(spec, trial, error=trial.status == "ERROR")
    return UNFINISHED
