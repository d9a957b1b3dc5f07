"""`scheduler: moasha` as a Ray Tune TrialScheduler: a thin adapter over rungs.RungBook, which
holds the rungs and decides.

Tune does not keep a scheduler's state across a resume: its experiment state leaves the
scheduler out (TuneController.__getstate__ drops `_scheduler_alg`), and tuner.pkl holds the one
pickled when the search began, rungs empty. So the book is written to the experiment directory
whenever a rung records a result, before Tune acts on the decision, and read back when a resumed
search first calls the scheduler. Each driver writes a file of its own
(`moasha_rungs-<start>-<pid>.json`, holding a write count): a resumed Tune copies the experiment
directory into its driver staging folder and uploads that folder again and again, so a file an
earlier driver wrote comes back as it was then, over anything written under its name since. The
book read back is the one with the most writes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

from tuner.core.objective import Objective
from tuner.runner.rungs import STOP, RungBook
from tuner.system.tune_storage import ExperimentDir

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

log = logging.getLogger(__name__)
STATE_PREFIX = "moasha_rungs-"


class MOASHAScheduler(FIFOScheduler):
    def __init__(
        self,
        objective: Objective,
        time_attr: str,
        max_t: float,
        grace_period: float,
        reduction_factor: float,
        brackets: int = 1,
        exp_dir: ExperimentDir | None = None,
    ):
        super().__init__()
        self._objective = objective
        self._metric = objective.metric[0]  # Tune checks that results carry it
        self._time_attr = time_attr
        self._book = RungBook.new(objective, grace_period, max_t, reduction_factor, brackets)
        self._exp_dir = exp_dir
        self._loaded = exp_dir is None
        self._file: str | None = None  # this driver's file, named at its first write
        self._writes = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None}  # a resumed driver writes a file of its own

    @property
    def book(self) -> RungBook:
        self._load()
        return self._book

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # the Objective came with the search file, whatever Tune's single metric says

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self.book.assign(trial.trial_id)
        self._save()

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if self._time_attr not in result:
            return TrialScheduler.CONTINUE
        book = self.book
        before = self._book_size()
        decision = book.on_result(trial.trial_id, result[self._time_attr], result)
        if self._book_size() != before:
            self._save()
        return TrialScheduler.STOP if decision == STOP else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        if self._time_attr in result:
            book = self.book
            before = self._book_size()
            book.on_result(trial.trial_id, result[self._time_attr], result, final=True)
            if self._book_size() != before:
                self._save()

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        pass  # its records stay: they are results other trials were measured against

    def debug_string(self) -> str:
        rungs = " | ".join(
            f"{float(m):g}: {len(r)}" for b in self.book.brackets for m, r in b.records.items()
        )
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
        newest = latest_book(self._exp_dir)  # type: ignore[arg-type]
        if newest is not None:
            self._book, self._writes = (
                RungBook.from_json(json.dumps(newest["book"])),
                int(newest["writes"]),
            )
            where = self._exp_dir.uri  # type: ignore[union-attr]
            log.info("moasha: rungs restored (%d writes) from %s", self._writes, where)

    def _save(self) -> None:
        """Written beside, then moved over: a driver killed mid-write leaves the last whole book."""
        if self._exp_dir is None:
            return
        d = self._exp_dir
        if self._file is None:
            self._file = f"{STATE_PREFIX}{time.time_ns()}-{os.getpid()}.json"
        self._writes += 1
        text = json.dumps({"writes": self._writes, "book": json.loads(self._book.to_json())})
        d.write_text(self._file + ".tmp", text)
        try:
            d.fs.move(d.child(self._file + ".tmp"), d.child(self._file))
        except (OSError, NotImplementedError):  # an object store without rename: write it in place
            d.write_text(self._file, text)
            d.fs.delete_file(d.child(self._file + ".tmp"))


def latest_book(exp_dir: ExperimentDir) -> dict[str, Any] | None:
    """The book with the most writes among the experiment directory's moasha files ({"writes",
    "book"}); None when there is none. A file that does not parse (cut short) is passed over."""
    best: dict[str, Any] | None = None
    for info in exp_dir.entries():
        if not (info.base_name.startswith(STATE_PREFIX) and info.base_name.endswith(".json")):
            continue
        try:
            saved = json.loads(exp_dir.read_text(info.base_name) or "")
            writes = int(saved["writes"])
        except (ValueError, KeyError, TypeError):
            continue
        if best is None or writes > best["writes"]:
            best = {"writes": writes, "book": saved["book"]}
    return best
