"""Which searched settings matter: Optuna's importance evaluators over a results table.

Pure: no Ray, no MLflow. The table's finished trials become an Optuna study of their own
(`create_trial` with distributions read off the values), one per metric, so a grid or random
search, or `tuner report` on a store, is measured the same way as an Optuna search.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

# A forest fitted on fewer points than this splits noise: fANOVA returns shares, but not ones to
# trust.
MIN_TRIALS = 4


@dataclass(frozen=True)
class Importances:
    """Per metric, each searched setting's share of the metric's variance (summing to 1), largest
    first; `message` says why there are none (too few finished trials, nothing searched)."""

    shares: dict[str, dict[str, float]] = field(default_factory=dict)
    trials: int = 0
    message: str = ""
    notes: tuple[
        str, ...
    ] = ()  # why a metric has no shares while others have (it never moved, too few values)

    def lines(self) -> list[str]:
        """What a person reads: "mu: 0.62 of knn_accuracy's variance", one setting a line."""
        if self.message:
            return [self.message]
        out = [
            f"which searched settings matter (fANOVA over {self.trials} finished trials, on "
            "validation):"
        ]
        for metric, shares in self.shares.items():
            out += [
                f"  {setting}: {share:.2f} of {metric}'s variance"
                for setting, share in shares.items()
            ]
        return out + [f"  {note}" for note in self.notes]

    def metrics(self) -> dict[str, float]:
        """As MLflow metrics of the parent run: importance_<metric>_<setting>."""
        return {
            f"importance_{m}_{s}": v for m, shares in self.shares.items() for s, v in shares.items()
        }


def _distribution(values: pd.Series) -> Any:
    """The distribution the values were drawn from, as far as they show it: numbers -> a float or
    int range, anything else (choices, lists such as hidden_dims) -> categories of their text."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all() and not values.map(lambda v: isinstance(v, bool)).any():
        low, high = float(numbers.min()), float(numbers.max())
        if (numbers == numbers.round()).all() and pd.api.types.is_integer_dtype(values):
            return IntDistribution(int(low), int(high))
        return FloatDistribution(low, high)
    return CategoricalDistribution(sorted({_text(v) for v in values}))


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


def _value(value: Any, dist: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return _text(value)
    return int(value) if isinstance(dist, IntDistribution) else float(value)


def param_importances(
    table: pd.DataFrame,
    settings: Sequence[str],
    metrics: Sequence[str],
    evaluator: Any = None,
    min_trials: int = MIN_TRIALS,
) -> Importances:
    """Importance of each of `settings` for each of `metrics`, over the table's FINISHED rows
    (fANOVA, seeded, unless another `optuna.importance` evaluator is given)."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    settings = [s for s in settings if s in table]
    metrics = [m for m in metrics if m in table]
    done = table[table["status"] == "FINISHED"] if "status" in table else table
    if not settings or not metrics:
        return Importances(
            message="importances: no searched setting or metric in the table to relate."
        )
    # Per metric below: a metric some trials lack (NaN, inf) costs those trials that metric's shares
    # only.
    done = done.dropna(subset=settings)
    # the forest's draws follow row order: the search and `tuner report` agree
    if "trial_id" in done:
        done = done.sort_values("trial_id", key=lambda ids: ids.astype(str), kind="stable")
    varied = [s for s in settings if done[s].map(_text).nunique() > 1]
    need = max(min_trials, len(varied) + 1)
    if len(done) < need or not varied:
        return Importances(
            trials=len(done),
            message=(
                f"importances: {len(done)} finished trial(s) are too few to tell which settings "
                f"matter (fANOVA needs at least {need}, and settings that vary among them)."
            ),
        )
    dists = {s: _distribution(done[s]) for s in varied}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shares: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    used = 0
    for metric in metrics:
        values = pd.to_numeric(done[metric], errors="coerce")
        rows = done[values.map(math.isfinite)]
        values = values[rows.index]
        if len(rows) < need:
            notes.append(
                f"{metric}: {len(rows)} finished trial(s) with a value are too few to tell "
                f"(fANOVA needs at least {need})."
            )
            continue
        if values.nunique() == 1:  # fANOVA divides by the variance: it raises on a constant
            notes.append(
                f"{metric}: every finished trial has the same value ({values.iloc[0]:g}): "
                f"no searched setting moves it."
            )
            continue
        study = optuna.create_study()
        study.add_trials(
            [
                optuna.trial.create_trial(
                    params={s: _value(row[s], dists[s]) for s in varied},
                    distributions=dists,
                    value=float(v),
                )
                for (_, row), v in zip(rows.iterrows(), values)
            ]
        )
        try:
            found = get_param_importances(
                study, evaluator=evaluator or FanovaImportanceEvaluator(seed=0)
            )
        except RuntimeError as err:  # values apart by rounding only: the forest's trees see none
            if "zero total variance" not in str(err):
                raise
            notes.append(
                f"{metric}: its values barely differ ({values.min():g} to {values.max():g}): "
                f"no searched setting moves it."
            )
            continue
        shares[metric] = {
            s: float(found.get(s, 0.0)) for s in sorted(varied, key=lambda s: -found.get(s, 0.0))
        }
        used = max(used, len(rows))
    if not shares:
        return Importances(trials=len(done), message="importances: " + " ".join(notes))
    return Importances(shares, trials=used, notes=tuple(notes))


def plot_importances(imp: Importances, out: Path) -> Path | None:
    """importance.png: one horizontal bar chart per metric; None when there is nothing to draw."""
    if not imp.shares:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1,
        len(imp.shares),
        figsize=(4.5 * len(imp.shares), 0.5 + 0.45 * max(len(s) for s in imp.shares.values()) + 1),
        squeeze=False,
    )
    for ax, (metric, shares) in zip(axes[0], imp.shares.items()):
        names = list(shares)[::-1]
        ax.barh(names, [shares[n] for n in names], color="#4c72b0")
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"share of {metric}'s variance")
        ax.set_title(metric)
    fig.suptitle(f"fANOVA importance over {imp.trials} finished trials")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
