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
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from tuner.core.selection import selection
from tuner.data.features import FeatureSet
from tuner.errors import first_line
from tuner.runner.trial import CHECKPOINT_FILE
from tuner.space.spec import SearchSpec, TrialRecord
from tuner.system.secrets import mask_uri
from tuner.trainer.evaluation import evaluate_split
from tuner.trainer.networks import AutoEncoder, build_model


def selected_trials(spec: SearchSpec, table: pd.DataFrame) -> list[str]:
    """The finished trials the search selects on validation, best first (`selection.selection`):
    with `repeats`, every run of the selected configuration, so the test figure reported for it is
    a mean over seeds too; with several metrics, the whole front."""
    return selection(table, spec.metric, spec.mode, spec.require)


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


def final_model(record: TrialRecord, trial: Any, n_features: int) -> AutoEncoder | None:
    state = read_final_state(trial)
    if state is None:
        return None
    model = build_model(record.config, n_features)
    model.load_state_dict(state["model"])
    return model.eval()


def test_selected(
    spec: SearchSpec,
    table: pd.DataFrame,
    trials: list,
    records: Mapping[str, TrialRecord],
    tracker: Any,
    data: FeatureSet,
) -> pd.DataFrame:
    """The table with test_* columns filled for the selected trials (NaN elsewhere), logged to their
    runs. `trials` are Tune's (their checkpoints), `records` the driver's record of each."""
    by_id = {t.trial_id: t for t in trials}
    rows: dict[str, dict[str, float]] = {}
    for trial_id in selected_trials(spec, table):
        trial = by_id.get(trial_id)
        model = (
            final_model(records[trial_id], trial, data.n_features) if trial is not None else None
        )
        if model is None:
            print(
                f"tuner: no final checkpoint of {trial_id} in storage: it is not measured on the "
                "test split.",
                file=sys.stderr,
                flush=True,
            )
            continue
        cfg = records[trial_id].config
        rows[trial_id] = evaluate_split(cfg.replace(device="cpu"), model, data, "test")
        tracker.log_metrics(trial_id, rows[trial_id], step=cfg.iterations)
    if not rows:
        return table
    tests = pd.DataFrame.from_dict(rows, orient="index")
    return table.join(tests, on="trial_id")


def test_selected_safely(
    spec: SearchSpec,
    table: pd.DataFrame,
    trials: list,
    records: Mapping[str, TrialRecord],
    tracker: Any,
    data: FeatureSet,
) -> pd.DataFrame:
    """As test_selected; a failure costs the test figures, never the search's results."""
    try:
        return test_selected(spec, table, trials, records, tracker, data)
    except Exception as err:  # noqa: BLE001 - the search's results are in; report and go on
        first = first_line(err)
        print(
            "tuner: could not measure the selected trials on the test split: "
            f"{type(err).__name__}: {mask_uri(first)}",
            file=sys.stderr,
            flush=True,
        )
        return table
