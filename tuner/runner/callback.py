"""Tune events -> SearchTracker, on the driver: one nested MLflow run per trial, found by trial id.

Also where what trials leave in storage is collected: the plots in a trial's last checkpoint
(whichever node wrote it), the node it ran on, the error of a failed trial.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ray import tune

from tuner.space.load import SearchSpec
from tuner.storage import delete_checkpoints, download_dir
from tuner.tracking.writer import SearchTracker, mask_uri
from tuner.runner.trial import PLOTS_DIR


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

    def end(self, trial: Any, status: str, error: str | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            plots = _storage_step(f"fetch {trial.trial_id}'s plots", _fetch_plots, trial, Path(tmp))
            self.tracker.trial_finished(trial.trial_id, status, plots, error=error)
        self.open_trials.discard(trial.trial_id)
        self.ended[trial.trial_id] = status
        if status != "FAILED":  # resume never restores an ended trial; a failed one it retries
            _storage_step(f"delete {trial.trial_id}'s checkpoints", delete_checkpoints,
                          trial.storage.storage_filesystem, trial.path, kept_checkpoint(self.spec, trial, status))

    def saw_node(self, trial_id: str, node: str) -> None:
        """Tag the trial's run with the nodes it ran on (more than one when it moved)."""
        seen = self.nodes.setdefault(trial_id, [])
        if seen[-1:] != [node]:
            seen.append(node)
            set_tags = getattr(self.tracker, "set_trial_tags", None)  # newer SearchTracker only
            if set_tags is not None:
                set_tags(trial_id, {"tuner.node": ",".join(seen)})


def kept_checkpoint(spec: SearchSpec, trial: Any, status: str) -> str | None:
    """A finished trial's last checkpoint stays while models may be logged from it at the end of
    the search (tuner.runner.models_step), also after --resume."""
    if getattr(spec, "log_models", "none") == "none" or status != "FINISHED" or trial.checkpoint is None:
        return None
    return trial.checkpoint.path


SESSIONS: dict[str, Session] = {}  # search id -> the live session


class TrackingCallback(tune.Callback):
    """Tune events -> SearchTracker: one nested MLflow run per trial, found by trial id."""

    def __init__(self, search_id: str) -> None:
        self.search_id = search_id

    @property
    def session(self) -> Session:
        return SESSIONS[self.search_id]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        s = self.session
        s.tracker.trial_started(trial.trial_id, s.spec.trial_config(trial.config).to_dict())
        s.open_trials.add(trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.session.tracker.log_metrics(trial.trial_id, result, step=int(result.get("iteration", 0)))
        self.session.saw_node(trial.trial_id, node_name(result))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id not in self.session.open_trials and "iteration" not in trial.last_result:
            return  # a pending trial dropped at Ctrl-C: it never ran, so it gets no run
        self.session.end(trial, _ended_status(self.session.spec, trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.session.end(trial, "FAILED", error=_error_text(trial))

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
    lines = [line for line in text.splitlines() if line.strip()]
    summary = lines[-1] if lines else f"trial {trial.trial_id} failed (see {trial.path})"
    return f"{summary}\n\n{text}" if text else summary  # the exception first, then the traceback


def _ended_status(spec: SearchSpec, trial: Any) -> str:
    """FINISHED when the trial reached its last iteration, else KILLED (stopped by ASHA)."""
    last = trial.last_result.get("iteration", 0)
    return "FINISHED" if last >= spec.trial_config(trial.config).iterations else "KILLED"


def row_status(spec: SearchSpec, session: Session, trial: Any) -> str:
    """What ended in this run says itself; Tune marks interrupted trials TERMINATED too."""
    if trial.trial_id in session.ended:
        return session.ended[trial.trial_id]
    if trial.trial_id in session.open_trials or "iteration" not in trial.last_result:  # never reported
        return "UNFINISHED"
    if trial.status == "ERROR":
        return "FAILED"
    return _ended_status(spec, trial) if trial.status == "TERMINATED" else "UNFINISHED"
