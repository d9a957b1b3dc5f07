"""The driver's ledger of a search's trials: each trial's record (its TrialConfig, params and run
name, built once where the trial first appears and looked up after), which started in this run
and how each ended. The callback fills it; the results table, the final test and the models step
read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuner.core.selection import UNFINISHED, TrialOutcome, trial_status
from tuner.space.spec import SearchSpec, TrialRecord


@dataclass
class TrialLedger:
    spec: SearchSpec
    records: dict[str, TrialRecord] = field(default_factory=dict)  # trial id -> its record
    open: set[str] = field(default_factory=set)  # started in this run, not ended
    ended: dict[str, str] = field(default_factory=dict)  # trial id -> status, this run
    trials: list = field(default_factory=list)  # Tune's trials at the end, earlier runs' too

    def record(self, trial: Any) -> TrialRecord:
        """The trial's record: built the first time the trial is seen (its start; for a trial that
        ended under an earlier driver of a resumed search, the search's end), then looked up."""
        found = self.records.get(trial.trial_id)
        if found is None:
            found = self.records[trial.trial_id] = self.spec.record(trial.trial_id, trial.config)
        return found

    def ended_status(self, trial: Any, error: bool) -> str:
        last = trial.last_result.get("iteration", 0)
        iterations = self.record(trial).config.iterations
        status = trial_status(last, iterations, error=error, reported=True)
        return status  # type: ignore[return-value]

    def row_status(self, trial: Any) -> str:
        """What ended in this run says itself; Tune marks interrupted trials TERMINATED too."""
        if trial.trial_id in self.ended:
            return self.ended[trial.trial_id]
        if trial.trial_id in self.open or "iteration" not in trial.last_result:  # never reported
            return UNFINISHED
        if trial.status in ("ERROR", "TERMINATED"):
            return self.ended_status(trial, error=trial.status == "ERROR")
        return UNFINISHED

    def outcomes(self) -> list[TrialOutcome]:
        """Every trial of the search as the results table shows it."""
        return [
            TrialOutcome(t.trial_id, self.row_status(t), self.record(t).params, t.last_result)
            for t in self.trials
        ]
