"""What `tuner.search(...)` returns: the trials table, the trial the search chose, the trials it
selected (the Pareto front), the registered model and the MLflow runs.

Names a user of Ray Tune or Optuna knows: `best_trial` / `best_trials` as Optuna's Study has
them, `get_best_result()` as Ray's ResultGrid, `params` / `config` / `metrics` on a trial. Which
trial is best is the search's own rule (`core.selection`: `chosen`, `selection`): the one whose
figures went to the parent run and whose model was registered, never a second opinion. A trial's
config and params are the driver's record of it (`space.spec.TrialRecord`, built once by the
ledger as the trial first appeared), not rebuilt from the table's cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tuner.core.config import TrialConfig
from tuner.core.metrics import METRIC_MODES, TEST_METRICS, TRIAL_METRICS
from tuner.core.objective import Objective
from tuner.core.selection import chosen, selection
from tuner.errors import TunerError
from tuner.space.spec import SearchSpec, TrialRecord
from tuner.tracking.readback import SearchRuns


@dataclass(frozen=True)
class TrialResult:
    """One trial of a search: its id, how it ended, its values, and its MLflow run."""

    trial_id: str
    status: str  # FINISHED, FAILED, KILLED (stopped early, or interrupted), UNFINISHED
    params: Mapping[str, Any]  # the searched values (and the seed, with `repeats`)
    # Last validation figures; test_* too for the trials the search selected.
    metrics: Mapping[str, float]
    run_id: str | None  # its MLflow run; None when the store could not be read back
    config: TrialConfig = field(repr=False)  # every setting the trial trained with


@dataclass(frozen=True, eq=False)
class SearchResult:
    """One search's outcome. `best_trial` is the trial the search chose (within `require:`, the
    best by the first metric on validation; None when none finished); `best_trials` the trials it
    selected and read on the test split: the Pareto front with several metrics, else the chosen
    configuration's runs (one trial, or one per seed with `repeats`)."""

    trials: pd.DataFrame = field(repr=False)  # one row per trial, best first (as `tuner report`)
    best_trial: TrialResult | None
    best_trials: tuple[TrialResult, ...] = field(repr=False)
    status: str  # FINISHED when every trial ended, else KILLED (interrupted: --resume continues)
    experiment: str  # the MLflow experiment
    search_id: str
    parent_run_id: str | None  # the search's MLflow run
    model_uri: str | None  # models:/NAME/VERSION registered by this search; None when none was
    experiment_path: str = field(repr=False)  # Tune's storage of this search (`tuner sync`)
    spec: SearchSpec = field(repr=False)
    records: Mapping[str, TrialRecord] = field(default_factory=dict, repr=False)  # trial id ->
    run_ids: Mapping[str, str] = field(default_factory=dict, repr=False)  # trial id -> run id

    @property
    def model_version(self) -> int | None:
        """The registered version (`tuner.load_model(result.model_uri)` loads it)."""
        return None if self.model_uri is None else int(self.model_uri.rsplit("/", 1)[1])

    def get_best_result(self, metric: str | None = None, mode: str | None = None) -> TrialResult:
        """The search's chosen trial (`best_trial`); with `metric` (such as recon_error or
        test_knn_accuracy), the finished trial best by it instead, `mode` defaulting to the
        metric's own. RuntimeError when no trial qualifies, as Ray's ResultGrid raises."""
        if metric is None:
            if self.best_trial is None:
                within = " within require" if self.spec.require else ""
                raise RuntimeError(
                    f"search {self.search_id} ({self.status}) chose no trial: none "
                    f"finished{within}; see .trials."
                )
            return self.best_trial
        base = metric.removeprefix("test_")
        if base not in METRIC_MODES:
            raise TunerError(
                f"get_best_result({metric!r}): not a metric; expected one of "
                f"{', '.join(METRIC_MODES)} (or test_ before one)."
            )
        finished = self.trials[self.trials["status"] == "FINISHED"]
        rows = finished.to_dict("records") if metric in finished else []
        first = Objective.of(metric, mode or METRIC_MODES[base]).best(rows)
        if first is None:
            raise RuntimeError(f"no finished trial of search {self.search_id} has a {metric}.")
        return trial_result(self.spec, finished.iloc[first], self.records, self.run_ids)


def search_result(
    spec: SearchSpec,
    table: pd.DataFrame,
    records: Mapping[str, TrialRecord],
    status: str,
    experiment: str,
    search_id: str,
    experiment_path: str,
    runs: SearchRuns | None,
) -> SearchResult:
    """`records`: the ledger's record of every trial in `table`, by trial id."""
    run_ids = dict(runs.trial_run_ids) if runs else {}
    best = chosen(table, spec.metric, spec.mode, spec.require)
    selected = set(selection(table, spec.metric, spec.mode, spec.require))
    front = tuple(
        trial_result(spec, row, records, run_ids)
        for _, row in table.iterrows()
        if row["trial_id"] in selected
    )
    return SearchResult(
        table,
        None if best is None else trial_result(spec, best, records, run_ids),
        front,
        status,
        experiment,
        search_id,
        runs.parent_run_id if runs else None,
        runs.registered if runs else None,
        experiment_path,
        spec,
        records,
        run_ids,
    )


def trial_result(
    spec: SearchSpec,
    row: pd.Series,
    records: Mapping[str, TrialRecord],
    run_ids: Mapping[str, str],
) -> TrialResult:
    """A table row as a TrialResult: its figures from the row, its config and params from the
    trial's record."""
    trial_id = str(row["trial_id"])
    record = records[trial_id]
    # The searched names; `seed` is one with `repeats` (each run's own seed).
    searched = [k for k in dict.fromkeys([*spec.params, "seed"]) if k in row.index]
    params = {k: record.params[k] for k in searched}
    metrics = {
        k: float(row[k])
        for k in (*TRIAL_METRICS, *TEST_METRICS)
        if k in row.index and pd.notna(row[k])
    }
    return TrialResult(
        trial_id, str(row["status"]), params, metrics, run_ids.get(trial_id), record.config
    )
