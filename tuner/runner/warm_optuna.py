"""OptunaSearch told an earlier search's trials (`tuner search --warm-start`): complete ones, also
with several objectives, and pruned ones (trials ASHA stopped).

Ray 2.60's `OptunaSearch` takes earlier trials as `points_to_evaluate` + `evaluated_rewards`, all
complete, and hands each reward to Optuna as one `value`, so a list of rewards (one per metric)
fails Optuna's check; Optuna takes those as `values`. A module of its own: Tune pickles the
searcher into its saved state, so the class must be importable.
"""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch


class WarmOptunaSearch(OptunaSearch):
    def __init__(
        self,
        *args: Any,
        stopped: list[tuple[dict, float]] | None = None,
        budget: int | None = None,
        **kwargs: Any,
    ) -> None:
        # (point, last value): told as pruned once the study exists
        self._stopped = list(stopped or [])
        # moasha: a trial that ended before `budget` iterations was stopped, and its last figures
        # are not its final ones; Ray tells Optuna them as complete, which puts partial results on
        # the multi-objective sampler's front. Told as pruned instead (Optuna's multi-objective TPE
        # ranks pruned trials below every complete one).
        self._budget = budget
        super().__init__(*args, **kwargs)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if self._budget and result and not error and trial_id in self._ot_trials:
            budget = result.get(
                "config/iterations", (result.get("config") or {}).get("iterations", self._budget)
            )
            if result.get("iteration", budget) < budget:
                result = None  # Ray's OptunaSearch tells a trial without a result as pruned
        super().on_trial_complete(trial_id, result, error)

    def _setup_study(self, mode: str | list) -> None:
        super()._setup_study(mode)
        # Optuna keeps intermediate values for one objective
        single = not isinstance(self._metric, list)
        for point, last in self._stopped:
            self.add_evaluated_point(
                point, None, pruned=True, intermediate_values=[last] if single else None
            )

    def add_evaluated_point(
        self,
        parameters: dict,
        value: Any,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        if not isinstance(value, (list, tuple)) or error or pruned:
            super().add_evaluated_point(parameters, value, error, pruned, intermediate_values)
            return
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE,
            values=[float(v) for v in value],
            params=parameters,
            distributions=self._space,
        )
        self._ot_study.add_trial(trial)
