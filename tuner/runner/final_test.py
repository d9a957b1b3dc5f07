"""After a search: the trials it selected, read once on the test split.

Trials train on train and are measured, ranked, stopped and selected on validation; they never
receive the test arrays. Here the driver, which holds them, measures the selected trials (the
best of a single-objective search, every Pareto-front trial of a multi-objective one) from their
final checkpoints and logs the figures as `test_*` on their runs; the best's go to the parent
run too (tracking/parent.py). Selection and test figures thus come from different data, so the
reported figure is not biased upward by the selection (Musgrave et al., 2020).
"""

from __future__ import annotations

import io
import sys
from typing import Any

import pandas as pd
import torch

from tuner.errors import first_line
from tuner.data.features import FeatureSet
from tuner.outcome import config_table, meets, pareto_mask
from tuner.runner.trial import CHECKPOINT_FILE
from tuner.space.spec import SearchSpec
from tuner.secrets import mask_uri
from tuner.trainer.models import AutoEncoder, build_model
from tuner.trainer.evaluation import evaluate_split


def selected_trials(spec: SearchSpec, table: pd.DataFrame) -> list[str]:
    """The finished trials a search selects on validation, best first (the table's order).

    With `repeats`, a configuration is selected, not a seed: the complete configuration (every
    run finished) with the best mean (or the Pareto front of the means), and all its runs are read
    on test, so the test figure reported for it is a mean over seeds too. A single objective's
    best is the best within the search's `require` bounds; a front is read whole (the trial
    chosen on it meets them: `models_step.best_of`).
    """
    if table.empty:
        return []
    if spec.repeats > 1 and "config_id" in table:
        return _selected_configs(spec, table)
    done = table[(table["status"] == "FINISHED") & table[list(spec.metric)].notna().all(axis=1)]
    if not spec.multi_objective:
        return list(done[meets(done, spec.require)]["trial_id"][:1])
    if done.empty:
        return []
    return list(done[pareto_mask(done[list(spec.metric)].to_numpy(float), spec.mode)]["trial_id"])


def _selected_configs(spec: SearchSpec, table: pd.DataFrame) -> list[str]:
    configs = config_table(table, spec.metric, spec.mode)
    means = [f"{m}_mean" for m in spec.metric]
    done = configs[(configs["finished"] == configs["runs"]) & configs[means].notna().all(axis=1)]
    if done.empty:
        return []
    chosen = done[meets(done, spec.require, "_mean")][:1] if not spec.multi_objective else \
        done[pareto_mask(done[means].to_numpy(float), spec.mode)]
    return [trial_id for ids in chosen["trial_ids"] for trial_id in ids]


def read_final_state(trial: Any) -> dict[str, Any] | None:
    """The trial's last TrainState, read from storage (any node may have written it)."""
    ckpt = trial.checkpoint
    if ckpt is None:
        return None
    try:
        with ckpt.filesystem.open_input_stream(f"{ckpt.path}/{CHECKPOINT_FILE}") as stream:
            return torch.load(io.BytesIO(stream.read()), weights_only=True, map_location="cpu")
    except (OSError, FileNotFoundError):
        return None


def final_model(spec: SearchSpec, trial: Any, n_features: int) -> AutoEncoder | None:
    state = read_final_state(trial)
    if state is None:
        return None
    model = build_model(spec.trial_config(trial.config), n_features)
    model.load_state_dict(state["model"])
    return model.eval()


def test_selected(spec: SearchSpec, table: pd.DataFrame, trials: list, tracker: Any,
                  data: FeatureSet) -> pd.DataFrame:
    """The table with test_* columns filled for the selected trials (NaN elsewhere), logged to their runs."""
    by_id = {t.trial_id: t for t in trials}
    rows: dict[str, dict[str, float]] = {}
    for trial_id in selected_trials(spec, table):
        trial = by_id.get(trial_id)
        model = final_model(spec, trial, data.n_features) if trial is not None else None
        if model is None:
            print(f"tuner: no final checkpoint of {trial_id} in storage: it is not measured on the test split.",
                  file=sys.stderr, flush=True)
            continue
        cfg = spec.trial_config(trial.config)
        rows[trial_id] = evaluate_split(cfg.replace(device="cpu"), model, data, "test")
        tracker.log_metrics(trial_id, rows[trial_id], step=cfg.iterations)
    if not rows:
        return table
    tests = pd.DataFrame.from_dict(rows, orient="index")
    return table.join(tests, on="trial_id")


def test_selected_safely(spec: SearchSpec, table: pd.DataFrame, trials: list, tracker: Any,
                         data: FeatureSet) -> pd.DataFrame:
    """As test_selected; a failure costs the test figures, never the search's results."""
    try:
        return test_selected(spec, table, trials, tracker, data)
    except Exception as err:  # noqa: BLE001 - the search's results are in; report and go on
        first = first_line(err)
        print(f"tuner: could not measure the selected trials on the test split: {type(err).__name__}: "
              f"{mask_uri(first)}", file=sys.stderr, flush=True)
        return table
