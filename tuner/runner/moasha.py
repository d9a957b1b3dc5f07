"""`scheduler: moasha` as a Ray Tune TrialScheduler: a thin adapter over rungs.RungBook, which
holds the rungs and decides.

Tune does not keep a scheduler's state across a resume: its experiment state leaves the
scheduler out (TuneController.__getstate__ drops `_scheduler_alg`), and tuner.pkl holds the one
pickled when the search began, rungs empty. So the book is written to the experiment directory
(`moasha_rungs.json`) whenever a rung records a result, before Tune acts on the decision, and
read back when a resumed search first calls the scheduler.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

from tuner.objective import Objective
from tuner.rungs import STOP, RungBook
from tuner.storage import ExperimentDir

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

log = logging.getLogger(__name__)
STATE_FILE = "moasha_rungs.json"


class MOASHAScheduler(FIFOScheduler):
    def __init__(self, objective: Objective, time_attr: str, max_t: float, grace_period: float,
                 reduction_factor: float, brackets: int = 1, exp_dir: ExperimentDir | None = None):
        super().__init__()
        self._objective = objective
        self._metric = objective.metric[0]  # Tune checks that results carry it
        self._time_attr = time_attr
        self._book = RungBook.new(objective, grace_period, max_t, reduction_factor, brackets)
        self._exp_dir = exp_dir
        self._loaded = exp_dir is None

    @property
    def book(self) -> RungBook:
        self._load()
        return self._book

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # the Objective came with the search file, whatever Tune's single metric says

    def on_trial_add(self, tune_controller: Any, trial: "Trial") -> None:
        self.book.assign(trial.trial_id)
        self._save()

    def on_trial_result(self, tune_controller: Any, trial: "Trial", result: dict) -> str:
        if self._time_attr not in result:
            return TrialScheduler.CONTINUE
        before = self._book_size()
        decision = self.book.on_result(trial.trial_id, result[self._time_attr], result)
        if self._book_size() != before:
            self._save()
        return TrialScheduler.STOP if decision == STOP else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: "Trial", result: dict) -> None:
        if self._time_attr in result:
            before = self._book_size()
            self.book.on_result(trial.trial_id, result[self._time_attr], result, final=True)
            if self._book_size() != before:
                self._save()

    def on_trial_remove(self, tune_controller: Any, trial: "Trial") -> None:
        pass  # its records stay: they are results other trials were measured against

    def debug_string(self) -> str:
        rungs = " | ".join(f"{float(m):g}: {len(r)}" for b in self.book.brackets for m, r in b.records.items())
        return f"Using MOASHA: num_stopped={self.book.stopped} rungs {rungs}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            f.write(self.book.to_json())

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            self._book = RungBook.from_json(f.read())
        self._loaded = True

    def _book_size(self) -> int:
        return sum(len(r) for b in self._book.brackets for r in b.records.values())

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        text = self._exp_dir.read_text(STATE_FILE)  # type: ignore[union-attr]
        if text:
            self._book = RungBook.from_json(text)
            log.info("moasha: rungs restored from %s", self._exp_dir.child(STATE_FILE))  # type: ignore[union-attr]

    def _save(self) -> None:
        """Written beside, then moved over: a driver killed mid-write leaves the last whole book."""
        if self._exp_dir is None:
            return
        d = self._exp_dir
        d.write_text(STATE_FILE + ".tmp", self._book.to_json())
        try:
            d.fs.move(d.child(STATE_FILE + ".tmp"), d.child(STATE_FILE))
        except (OSError, NotImplementedError):  # an object store without rename: write it in place
            d.write_text(STATE_FILE, self._book.to_json())
            d.fs.delete_file(d.child(STATE_FILE + ".tmp"))
