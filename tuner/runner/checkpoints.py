"""Ended trials' checkpoints, deleted from storage once Tune's saved state records the end.

A finished trial's last checkpoint stays (`kept_checkpoint`): the end of the search reads it. A
storage hiccup here costs disk space, never the search (`storage_step`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuner.system.secrets import mask_uri
from tuner.system.tune_storage import delete_checkpoints

# How long an ended trial's checkpoints outlive it: ten of Tune's state saves
# (TUNE_GLOBAL_CHECKPOINT_S, 3 s, runner/tune_setup.py), so the saved state has recorded the end
# before they go.
CHECKPOINT_GRACE_S = 30.0


def kept_checkpoint(trial: Any, status: str) -> str | None:
    """A finished trial's last checkpoint stays: at the end of the search (also after --resume)
    the driver reads the selected trials' final state for the test split (runner/final_test.py)
    and for their models (runner/models_step.py). Only those chosen then are needed, but which
    they are is known only once every trial has ended."""
    if status != "FINISHED" or trial.checkpoint is None:
        return None
    return trial.checkpoint.path


@dataclass
class CheckpointCleaner:
    # Ended trials' checkpoints to delete: (monotonic end time, trial, the checkpoint that stays).
    due: list[tuple[float, Any, str | None]] = field(default_factory=list)

    def trial_ended(self, trial: Any, status: str) -> None:
        self.due.append((time.monotonic(), trial, kept_checkpoint(trial, status)))

    def delete(self, ended_before_s: float = 0.0) -> None:
        """Delete the checkpoints of trials that ended at least `ended_before_s` ago.

        Not at once: until Tune's saved state (written every few seconds, uploaded in the
        background) records the trial as ended, a crash resumes it from the checkpoint that state
        names, an earlier one. With no wait only once Tune has saved its final state."""
        now = time.monotonic()
        ready = [entry for entry in self.due if now - entry[0] >= ended_before_s]
        self.due = [entry for entry in self.due if now - entry[0] < ended_before_s]
        for _, trial, keep in ready:
            storage_step(
                f"delete {trial.trial_id}'s checkpoints",
                delete_checkpoints,
                trial.storage.storage_filesystem,
                trial.path,
                keep,
            )


def storage_step(what: str, step: Callable[..., Any], *args: Any) -> Any:
    """A storage hiccup costs a trial's plots or disk space, never the search (Tune stops on a
    callback's exception)."""
    try:
        return step(*args)
    except OSError as err:  # pyarrow's I/O errors are OSErrors
        print(f"tuner: could not {what} in storage: {mask_uri(err)}", file=sys.stderr, flush=True)
        return None
