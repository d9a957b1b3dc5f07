"""What a person sees while a search runs: one live line instead of Tune's per-trial boxes.

Tune's own status output goes to `tune_output.log` in the experiment directory (`--verbose`
brings it back to the console); the live line shows trials done / running / pending / stopped /
failed, the best so far with its setting, the elapsed time and an ETA. `TrialLines` is what the
search's callback prints through.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tuner.runner.setup_clock import SetupClock
from tuner.space.spec import SearchSpec
from tuner.system.tune_storage import ExperimentDir

TUNE_LOG = "tune_output.log"


class SearchProgress:
    """A tqdm line over the search's trials; `n` counts the trials that ended."""

    def __init__(self, spec: SearchSpec, file: Any = None) -> None:
        self.objective, self.searched = spec.objective, list(spec.params)
        self.started: set[str] = set()
        self.ended: dict[str, str] = {}
        self.pool: list[
            tuple[dict[str, float], str]
        ] = []  # (figures, setting) no other result dominates
        self.best: tuple[dict[str, float], str] | None = None  # the Objective's first of them
        self.front = 0  # how many they are
        # postfix as a one-item list: bar_format shows it as written (a plain postfix gets ", "
        # before it). The size from $COLUMNS/$LINES or the terminal, else 120 x 24: tqdm hides a bar
        # on a terminal that reports 0 rows (a pty no one sized, as under `script` or some CI
        # runners).
        size = shutil.get_terminal_size((120, 24))
        # Times before the counts and the best: a line wider than the terminal loses its end.
        self.bar = tqdm(
            total=spec.n_trials,
            unit="trial",
            file=file or sys.stderr,
            ncols=size.columns,
            nrows=size.lines,
            mininterval=1.0,
            postfix=[""],
            bar_format="{n_fmt}/{total_fmt} trials |{bar:16}| {elapsed} elapsed, ETA {remaining} | "
            "{postfix[0]}",
        )
        self._show()

    def trial_started(self, trial_id: str) -> None:
        self.started.add(trial_id)
        self._show()

    def trial_result(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """The best so far by the search's Objective (tuner.core.objective) over every result
        reported: one metric, its best value; several, the first of the non-dominated results (and
        how many there are). Only the non-dominated ones are kept, so each result costs little."""
        names = dict.fromkeys([*self.objective.metric, *self.objective.require])
        figures = {m: float(result[m]) for m in names if isinstance(result.get(m), (int, float))}
        if not all(math.isfinite(figures.get(m, math.nan)) for m in self.objective.metric):
            return
        setting = " ".join(f"{k}={_short(config.get(k))}" for k in self.searched)
        pool = [*self.pool, (figures, setting)]
        self.pool = [p for p in pool if not any(self.objective.dominates(q[0], p[0]) for q in pool)]
        best = self.pool[self.objective.best([f for f, _ in self.pool])]  # type: ignore[index]
        if best != self.best or len(self.pool) != self.front:
            self.best, self.front = best, len(self.pool)
            self._show()

    def trial_ended(self, trial_id: str, status: str) -> None:
        if trial_id not in self.ended:
            self.ended[trial_id] = status
            self.bar.update(1)
        self._show()

    def close(self) -> None:
        self._show()
        self.bar.close()

    def _show(self) -> None:
        stopped = sum(s == "KILLED" for s in self.ended.values())
        failed = sum(s == "FAILED" for s in self.ended.values())
        running = len(self.started - set(self.ended))
        pending = max(0, (self.bar.total or 0) - len(self.started | set(self.ended)))
        parts = [
            f"done {len(self.ended) - stopped - failed}",
            f"running {running}",
            f"pending {pending}",
            f"stopped {stopped}",
            f"failed {failed}",
        ]
        if self.best is not None:
            figures = " ".join(f"{m} {self.best[0][m]:.4g}" for m in self.objective.metric)
            head = f"front {self.front}:" if self.objective.multi else "best"
            parts.append(f"{head} {figures}" + (f" ({self.best[1]})" if self.best[1] else ""))
        self.bar.postfix[0] = " | ".join(parts)
        self.bar.refresh()


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@contextlib.contextmanager
def tune_output_to_log(exp_dir: ExperimentDir) -> Iterator[str]:
    """Tune's status output (it prints to stdout) into `tune_output.log` in the experiment
    directory; yields where it goes. Object stores cannot append: there the log is written
    locally and copied in at the end."""
    local = not exp_dir.is_uri
    path = Path(exp_dir.child(TUNE_LOG)) if local else Path(tempfile.mkdtemp()) / TUNE_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as log, contextlib.redirect_stdout(log):
        try:
            yield str(path) if local else exp_dir.uri.rstrip("/") + "/" + TUNE_LOG
        finally:
            log.flush()
            if not local:
                with contextlib.suppress(OSError):
                    exp_dir.write_text(TUNE_LOG, path.read_text())


@dataclass
class TrialLines:
    """What a running search prints as trials come and go: the live line (None: quiet, or Tune's
    own output) and, at the first trial's start, the setup-time line (`clock`; None: quiet)."""

    progress: SearchProgress | None = None
    clock: SetupClock | None = None

    def trial_started(self, trial_id: str) -> None:
        line = self.clock.first_trial() if self.clock is not None else None
        if line and self.progress is not None:
            self.progress.bar.write(line, file=sys.stderr)  # above the live line, which stays
        elif line:
            print(line, file=sys.stderr, flush=True)
        if self.progress is not None:
            self.progress.trial_started(trial_id)

    def trial_result(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        if self.progress is not None:
            self.progress.trial_result(config, result)

    def trial_ended(self, trial_id: str, status: str) -> None:
        if self.progress is not None:
            self.progress.trial_ended(trial_id, status)
