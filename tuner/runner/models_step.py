"""The end of a search: the chosen trials' models, built from their last checkpoints, are logged
to their MLflow runs and the best one is registered (tuner.tracking.registry).

Which trials (`log_models` in the search file): `best` is the best finished trial of a
single-objective search, or every finished trial on the Pareto front of a multi-objective one;
`all` every finished trial. Only finished trials: their last checkpoint holds exactly the state
their final metrics were measured on. The registered one is the best by the first metric.
A failure here costs the models, never the search: it is reported and the search ends as usual.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuner.core.metrics import TRIAL_METRICS
from tuner.core.selection import chosen, require_text
from tuner.data.features import FeatureSet
from tuner.errors import first_line
from tuner.runner.final_test import read_final_state, selected_trials
from tuner.space.spec import SearchSpec, TrialRecord
from tuner.system.secrets import mask_uri
from tuner.tracking import tags


def chosen_trials(spec: SearchSpec, table: pd.DataFrame) -> list[str]:
    """Trial ids whose models are logged, best first (the table's order)."""
    if spec.log_models == "none" or table.empty:
        return []
    if spec.log_models == "all":
        return list(table[table["status"] == "FINISHED"]["trial_id"])
    return selected_trials(spec, table)


def best_of(spec: SearchSpec, table: pd.DataFrame, trial_ids: list[str]) -> str | None:
    """The one to register, of those whose model was logged: the search's chosen trial
    (`selection.chosen`), never a run of a configuration it did not select (`log_models: all`)."""
    best = chosen(table, spec.metric, spec.mode, spec.require, among=trial_ids)
    return None if best is None else str(best["trial_id"])


@dataclass
class ModelWarmUp:
    """Model logging's one-time cost (torch.export's first call) paid while the search's last
    trials run, on the cores they leave free, not after them."""

    spec: SearchSpec
    thread: threading.Thread | None = None

    def last_trials_running(self, trials: list) -> None:
        """Once every trial has started and one has ended, a core stays free till the search
        ends."""
        if (
            self.thread is None
            and self.spec.log_models != "none"
            and len(trials) >= self.spec.n_trials
            and not any(t.status == "PENDING" for t in trials)
        ):
            from tuner.tracking.registry import warm_up_model_logging

            # Not a daemon: one still inside torch when the interpreter finalizes is unwound
            # through C++ frames and aborts the process (SIGABRT and Ray's stack trace instead
            # of the exit code of a stopped search). Seen stopping a search in its final test.
            self.thread = threading.Thread(
                target=_quietly, args=(warm_up_model_logging,), name="tuner-warm-up"
            )
            self.thread.start()

    def wait(self) -> None:
        """Wait for the warm-up: torch.export in two threads at once is not something to rely on."""
        if self.thread is not None:
            self.thread.join()


def _quietly(step: Callable[[], Any]) -> None:
    """A warm-up that fails costs nothing: the real call pays, and reports, whatever it was."""
    try:
        step()
    except Exception:  # noqa: BLE001, S110 - see above
        pass


def log_search_models(
    spec: SearchSpec,
    table: pd.DataFrame,
    trials: list,
    records: Mapping[str, TrialRecord],
    tracker: Any,
    data: FeatureSet,
    data_dir: str | Path | None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Log the chosen trials' models and register the best; returns {trial id: ModelInfo}.
    `trials` are Tune's (their checkpoints), `records` the driver's record of each."""
    chosen = chosen_trials(spec, table)
    if not chosen:
        return {}
    if getattr(tracker, "offline", False):
        print(
            "tuner: MLflow is unreachable: no model logged (rerun the trial with tuner train "
            "--from-run once it answers).",
            file=sys.stderr,
            flush=True,
        )
        return {}
    try:
        logged = _log_models(
            spec,
            table,
            chosen,
            {t.trial_id: t for t in trials},
            records,
            tracker,
            data,
            data_dir,
            verbose,
        )
    except Exception as err:  # noqa: BLE001 - the search's results are in; losing models must not fail it
        print(
            f"tuner: could not log the search's models: {type(err).__name__}: "
            f"{mask_uri(first_line(err))}",
            file=sys.stderr,
            flush=True,
        )
        return {}
    try:
        _register(spec, table, logged, tracker, verbose)
    except Exception as err:  # noqa: BLE001 - the models are logged: say what failed, keep them
        print(
            f"tuner: the models are logged, but registering the chosen one as {spec.register_as!r} "
            f"failed: {type(err).__name__}: {mask_uri(first_line(err))}",
            file=sys.stderr,
            flush=True,
        )
    return logged


def _log_models(
    spec: SearchSpec,
    table: pd.DataFrame,
    chosen: list[str],
    trials: dict[str, Any],
    records: Mapping[str, TrialRecord],
    tracker: Any,
    data: FeatureSet,
    data_dir: str | Path | None,
    verbose: bool,
) -> dict[str, Any]:
    from tuner.data.inputs import normalization_stats
    from tuner.embedding import EmbeddingModel
    from tuner.tracking.registry import log_model

    stats = normalization_stats(spec.base_config, data_dir)
    example = _feature_example(data, stats)
    logged: dict[str, Any] = {}
    for trial_id in chosen:
        trial, run_id = trials.get(trial_id), tracker.trial_started(trial_id, {}, reopen=False)
        state = read_final_state(trial) if trial is not None else None
        if state is None or run_id is None:
            print(
                f"tuner: no final checkpoint of {trial_id} in storage: its model is not logged.",
                file=sys.stderr,
                flush=True,
            )
            continue
        model = EmbeddingModel.from_state(records[trial_id].config, state, data, stats)
        logged[trial_id] = log_model(
            tracker.client,
            run_id,
            model,
            example,
            _tags(spec, table, tracker, trial_id),
            featurized=True,
        )
        if verbose:
            print(f"logged the model of {trial_id}: {logged[trial_id].model_uri} (run {run_id})")
    return logged


def _register(
    spec: SearchSpec, table: pd.DataFrame, logged: dict[str, Any], tracker: Any, verbose: bool
) -> None:
    from tuner.tracking.note import record_registered
    from tuner.tracking.registry import register_model

    if not spec.register_as or not logged:
        return
    best = best_of(spec, table, list(logged))
    if best is None:
        if verbose:
            print(
                f"tuner: no logged model is the search's chosen trial (the best within require: "
                f"{require_text(spec.require) or 'none'}, on validation): nothing registered."
            )
        return
    reg = register_model(
        tracker.client,
        spec.register_as,
        logged[best],
        logged[best].run_id,
        _tags(spec, table, tracker, best),
        spec.objective,
    )
    record_registered(tracker.client, tracker.parent_run_id, reg.name, reg.version, reg.champion)
    if verbose:
        held = "now holds" if reg.moved else f"stays on version {reg.champion}; it holds"
        print(
            f"registered {best} as models:/{reg.name}/{reg.version}; alias champion {held} "
            f"the best by {spec.objective.describe()}"
        )


def _tags(spec: SearchSpec, table: pd.DataFrame, tracker: Any, trial_id: str) -> dict[str, Any]:
    row = table[table["trial_id"] == trial_id].iloc[0]
    metrics = {k: float(row[k]) for k in TRIAL_METRICS if k in row and pd.notna(row[k])}
    return {
        tags.SEARCH_ID: tracker.search_id,
        tags.TRIAL_ID: trial_id,
        tags.METRIC: ",".join(spec.metric),
        tags.MODE: ",".join(spec.mode),
        **metrics,
    }


def _feature_example(data: FeatureSet, stats: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """A few validation rows as the model's graph takes them: featurized, not yet normalized."""
    rows = data.x_val[:5].astype(np.float64)
    if stats is not None:
        rows = rows * stats[1] + stats[0]
    return rows.astype(np.float32)
