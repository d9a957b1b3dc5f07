"""Where a search's fixed cost goes: the seconds from `run_search`'s start to its first trial.

The aim is at most SETUP_BUDGET_S on a small grid (Ray start, Tune setup, the MLflow parent
run, baselines); past it, `tuner search` prints one line naming the phases that took it.
"""

from __future__ import annotations

import time

SETUP_BUDGET_S = 5.0


class SetupClock:
    """Laps of the setup phases; the last lap (`tune`) ends when the first trial starts."""

    def __init__(self, budget_s: float = SETUP_BUDGET_S) -> None:
        self.budget_s = budget_s
        self.started = self._mark = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.total: float | None = None  # set when the first trial starts

    def lap(self, phase: str) -> None:
        """The seconds since the previous lap belong to `phase`."""
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._mark
        self._mark = now

    def first_trial(self) -> str | None:
        """Called at every trial start: at the first, the line to print when setup ran over
        budget."""
        if self.total is not None:
            return None
        self.lap("tune")
        self.total = self._mark - self.started
        if self.total <= self.budget_s:
            return None
        spent = ", ".join(
            f"{name} {s:.1f} s" for name, s in sorted(self.phases.items(), key=lambda kv: -kv[1])
        )
        return (
            f"tuner: setup took {self.total:.1f} s before the first trial (aim <= "
            f"{self.budget_s:g} s): {spent}"
        )
