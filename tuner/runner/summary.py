"""What a search reports besides its trials' runs: baselines, the results table, the summary. Ray-free."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from tuner.data.features import FeatureSet
from tuner.space.load import SearchSpec
from tuner.trainer.metrics import METRIC_MODES
from tuner.tracking.writer import mask_uri

REPORTED = ("iteration", *METRIC_MODES)


@dataclass(frozen=True)
class TrialOutcome:
    """One trial as the table shows it: Tune's sampled config and last result, our status."""

    trial_id: str
    status: str  # FINISHED | KILLED | FAILED | UNFINISHED
    config: Mapping[str, Any]
    last_result: Mapping[str, Any]


def baselines(spec: SearchSpec, data: FeatureSet) -> dict[str, float]:
    """What an embedding must beat: kNN on the input features, and PCA at each searched latent_dim."""
    from sklearn.decomposition import PCA

    from tuner.trainer.metrics import knn_accuracy, reconstruction_error

    k = spec.base_config.knn_k
    out = {"baseline_input_knn_accuracy": knn_accuracy(data.x_train, data.y_train, data.x_test, data.y_test, k)}
    for dim in baseline_dims(spec):
        if dim > min(data.x_train.shape):
            continue
        pca = PCA(n_components=dim, random_state=0).fit(data.x_train)
        z_train, z_test = pca.transform(data.x_train), pca.transform(data.x_test)
        out[f"baseline_pca{dim}_knn_accuracy"] = knn_accuracy(z_train, data.y_train, z_test, data.y_test, k)
        out[f"baseline_pca{dim}_recon_error"] = reconstruction_error(pca.inverse_transform(z_test), data.x_test)
    return out


def baseline_dims(spec: SearchSpec) -> list[int]:
    p = spec.params.get("latent_dim")
    if p is None:
        return [spec.base_config.latent_dim]
    if p.values:
        return sorted({int(v) for v in p.values})
    low, step = int(p.low), p.q or 1
    count = (int(p.high) - low) // step + 1  # counted, not listed: randint [1, 10**12] is a valid range
    # A wide range: its two ends.
    return list(range(low, low + count * step, step)) if count <= 8 else [low, low + (count - 1) * step]


def results_table(spec: SearchSpec, trials: Sequence[TrialOutcome]) -> pd.DataFrame:
    """One row per trial: id, status, searched values, last reported metrics; best first."""
    rows = []
    for trial in trials:
        values = spec.trial_config(trial.config).to_dict()
        row = {"trial_id": trial.trial_id, "status": trial.status}
        row.update({k: json.dumps(values[k]) if isinstance(values[k], (list, dict)) else values[k]
                    for k in spec.params})
        row.update({k: trial.last_result.get(k, np.nan) for k in REPORTED})
        rows.append(row)
    table = pd.DataFrame(rows, columns=["trial_id", "status", *spec.params, *REPORTED])
    table = table.dropna(axis=1, how="all")  # kl for AEs only, fine_knn_accuracy when merged
    for metric in spec.metric:
        if metric not in table:
            table[metric] = np.nan
    if spec.multi_objective:
        table.insert(2, "pareto", pareto_mask(table[list(spec.metric)].to_numpy(float), spec.mode))
        return table.sort_values(["pareto", spec.metric[0]], ascending=[False, spec.mode[0] == "min"],
                                 na_position="last", kind="stable").reset_index(drop=True)
    return table.sort_values(spec.metric[0], ascending=spec.mode[0] == "min", na_position="last",
                             kind="stable").reset_index(drop=True)


def pareto_mask(values: np.ndarray, modes: tuple[str, ...]) -> np.ndarray:
    """Rows no other row dominates (at least as good in every metric, better in one)."""
    signed = values * np.where(np.asarray(modes) == "max", 1.0, -1.0)
    finite = np.all(np.isfinite(signed), axis=1)
    mask = np.zeros(len(signed), dtype=bool)
    others = signed[finite]
    for i in np.flatnonzero(finite):
        dominated = np.all(others >= signed[i], axis=1) & np.any(others > signed[i], axis=1)
        mask[i] = not dominated.any()
    return mask


def print_summary(spec: SearchSpec, table: pd.DataFrame, experiment: str, uri: str, storage: str,
                  seconds: float, status: str) -> None:
    counts = ", ".join(f"{n} {s.lower()}" for s, n in table["status"].value_counts().items()) if len(table) else "none"
    print(f"\nsearch {'interrupted' if status == 'KILLED' else status.lower()}: {len(table)} trials ({counts}) in {seconds:.0f} s")
    shown = table[table["pareto"]] if spec.multi_objective else table.head(10)
    what = f"Pareto front of {', '.join(spec.metric)}" if spec.multi_objective else \
        f"best trials by {spec.metric[0]} ({spec.mode[0]})"
    cols = [c for c in ("trial_id", "status", *spec.params, *spec.metric, "knn_accuracy", "recon_error",
                        "iteration") if c in table]
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(f"{what}:\n{shown[list(dict.fromkeys(cols))].to_string(index=False)}")
    print(f"\nMLflow experiment {experiment!r} in {mask_uri(uri)}\n"
          f"  tuner report --tracking-uri {mask_uri(uri)} --experiment {experiment}\n"
          f"  tuner ui --tracking-uri {mask_uri(uri)}   (or: mlflow ui --backend-store-uri {mask_uri(uri)})\n"
          f"Tune results and checkpoints: {mask_uri(storage)}")
    if status == "KILLED":
        print(f"interrupted: continue with `tuner search --space {spec.path} --resume` "
              f"(same --storage-path / --experiment / --set)")
