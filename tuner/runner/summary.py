"""What a search shows besides its trials: the baselines it logs, the summary it prints.
Ray-free."""

from __future__ import annotations

import pandas as pd
from sklearn.decomposition import PCA

from tuner.core.selection import chosen_text, config_summary
from tuner.data.features import FeatureSet
from tuner.space.spec import SearchSpec
from tuner.system.secrets import mask_uri
from tuner.trainer.metrics import knn_accuracy, reconstruction_error


def baselines(spec: SearchSpec, data: FeatureSet) -> dict[str, float]:
    """What an embedding must beat: kNN on the input features, and PCA at each searched latent_dim;
    fitted on train, measured on validation (plain names) and on test (prefix `test_`)."""
    k = spec.base_config.knn_k
    splits = {"": (data.x_val, data.y_val)} | (
        {"test_": (data.x_test, data.y_test)} if data.has_test else {}
    )
    out = {
        f"{prefix}baseline_input_knn_accuracy": knn_accuracy(data.x_train, data.y_train, x, y, k)
        for prefix, (x, y) in splits.items()
    }
    for dim in baseline_dims(spec):
        if dim > min(data.x_train.shape):
            continue
        pca = PCA(n_components=dim, random_state=0).fit(data.x_train)
        z_train = pca.transform(data.x_train)
        for prefix, (x, y) in splits.items():
            z = pca.transform(x)
            out[f"{prefix}baseline_pca{dim}_knn_accuracy"] = knn_accuracy(
                z_train, data.y_train, z, y, k
            )
            out[f"{prefix}baseline_pca{dim}_recon_error"] = reconstruction_error(
                pca.inverse_transform(z), x
            )
    return out


def baseline_dims(spec: SearchSpec) -> list[int]:
    p = spec.params.get("latent_dim")
    if p is None:
        return [spec.base_config.latent_dim]
    if p.values:
        return sorted({int(v) for v in p.values})
    low, step = int(p.low), p.q or 1
    count = (
        int(p.high) - low
    ) // step + 1  # counted, not listed: randint [1, 10**12] is a valid range
    # A wide range: its two ends.
    return (
        list(range(low, low + count * step, step))
        if count <= 8
        else [low, low + (count - 1) * step]
    )


def print_configs(spec: SearchSpec, table: pd.DataFrame) -> None:
    """Repeats: the configurations by their mean over seeds (how the search ranks and selects
    them)."""
    configs = config_summary(table, spec.metric, spec.mode, list(spec.params)).head(10)
    print(
        f"best configurations by their mean over {spec.repeats} seeds (test_*: the selected "
        f"configuration's runs):\n{configs.to_string(index=False)}\n"
    )


# The order a summary counts statuses in, whichever is most common: the line reads the same way
# from one search to the next (others follow, by name).
STATUS_ORDER = ("FINISHED", "KILLED", "ERROR")


def status_counts(statuses: pd.Series) -> str:
    """'4 finished, 2 killed': each status present, in STATUS_ORDER."""
    counted = statuses.value_counts()
    order = [s for s in STATUS_ORDER if s in counted] + sorted(
        s for s in counted.index if s not in STATUS_ORDER
    )
    return ", ".join(f"{counted[s]} {s.lower()}" for s in order)


def print_summary(
    spec: SearchSpec,
    table: pd.DataFrame,
    experiment: str,
    uri: str,
    storage: str,
    seconds: float,
    status: str,
) -> None:
    counts = status_counts(table["status"]) if len(table) else "none"
    print(
        f"\nsearch {'interrupted' if status == 'KILLED' else status.lower()}: "
        f"{len(table)} trials ({counts}) in {seconds:.0f} s"
    )
    shown = table[table["pareto"]] if spec.multi_objective else table.head(10)
    if "iteration" in shown:  # MLflow keeps metrics as floats; 14400 read as 1.44e+04 in the table
        shown = shown.astype({"iteration": "Int64"})
    what = (
        f"Pareto front of {', '.join(spec.metric)}"
        if spec.multi_objective
        else f"best trials by {spec.metric[0]} ({spec.mode[0]})"
    )
    what += " on validation" + (
        "; test_* read once, for the selected trials" if "test_knn_accuracy" in table else ""
    )
    tested = [f"test_{m}" for m in (*spec.metric, "knn_accuracy", "recon_error")]
    cols = [
        c
        for c in (
            "trial_id",
            "status",
            *spec.params,
            *spec.metric,
            "knn_accuracy",
            "recon_error",
            *tested,
            "iteration",
        )
        if c in table
    ]
    with pd.option_context(
        "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format
    ):
        if spec.repeats > 1 and len(table):
            print_configs(spec, table)
        print(f"{what}:\n{shown[list(dict.fromkeys(cols))].to_string(index=False)}")
        if spec.require and len(table):
            print(
                chosen_text(table, spec.metric, spec.mode, spec.require, list(dict.fromkeys(cols)))
            )
    if "importances" in table.attrs:
        print("\n" + "\n".join(table.attrs["importances"].lines()))
    print(
        f"\nMLflow experiment {experiment!r} in {mask_uri(uri)}\n"
        f"  tuner report --tracking-uri {mask_uri(uri)} --experiment {experiment}\n"
        f"  tuner ui --tracking-uri {mask_uri(uri)}   "
        f"(or: mlflow ui --backend-store-uri {mask_uri(uri)})\n"
        f"Tune results and checkpoints: {mask_uri(storage)} "
        "(Tune's console output: tune_output.log there)"
    )
    if status == "KILLED":
        print(
            f"interrupted: continue with `tuner search --space {spec.path} --resume` "
            f"(same --storage-path / --experiment / --set)"
        )
