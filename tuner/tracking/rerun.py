"""`tuner train --from-run RUN_ID`: the TrialConfig of a trial, read back from its MLflow run.

A trial run's params are its whole TrialConfig (`to_dict()`, written by the search's tracker:
lists and mappings as JSON, the rest with str()), so parsing them back rebuilds the config;
`--set` pairs then change it. Same machine, same threads: the same metrics, to the last bit.
"""

from __future__ import annotations

from typing import Any

from tuner.core.config import FIELDS, TrialConfig
from tuner.core.params import from_text
from tuner.errors import TunerError, first_line
from tuner.system.secrets import mask_uri
from tuner.tracking import tags
from tuner.tracking.store import connect, existing_store, whole_params

COMPARED = ("knn_accuracy", "recon_error", "fine_knn_accuracy")


def trial_run(run_id: str, tracking_uri: str | None) -> tuple[Any, Any]:
    """(client, the MLflow run of a trial); TunerError for an unreachable store, an unknown run or
    another kind."""
    uri = existing_store(tracking_uri, f"--from-run {run_id}")  # reading never creates a store
    client = connect(uri)
    try:
        run = client.get_run(run_id)
    except Exception as err:  # noqa: BLE001 - MlflowException for a missing run, others for bad ids
        first = first_line(err)
        raise TunerError(
            f"--from-run {run_id}: no such run in {mask_uri(uri)} ({mask_uri(first)}). Pass the "
            "run id of a trial (tuner report lists them) and the --tracking-uri it was logged to."
        ) from None
    role = run.data.tags.get(tags.ROLE)
    if role != tags.ROLE_TRIAL and tags.TRIAL_ID not in run.data.tags:
        raise TunerError(
            f"--from-run {run_id}: run {run.info.run_name!r} is not a trial run of a tuner search "
            f"({tags.ROLE} = {role!r}); pass one of the nested runs under a search."
        )
    return client, run


def config_from_params(
    params: dict[str, str], overrides: dict[str, Any], source: str
) -> TrialConfig:
    fields = set(FIELDS)
    values = {k: from_text(v) for k, v in params.items() if k in fields}
    missing = sorted(fields - set(values))
    if missing:
        raise TunerError(
            f"{source}: the run lacks the params {', '.join(missing)}; it was not logged "
            f"by this version of tuner, so its config cannot be rebuilt exactly."
        )
    return TrialConfig.from_dict({**values, **overrides}, source=source)


def config_from_run(
    run_id: str, tracking_uri: str | None, overrides: dict[str, Any]
) -> tuple[TrialConfig, Any]:
    client, run = trial_run(run_id, tracking_uri)
    return config_from_params(whole_params(client, run), overrides, f"run {run_id}"), run


def print_comparison(run: Any, metrics: dict[str, float]) -> None:
    """The run's logged final metrics beside the rerun's."""
    for key in COMPARED:
        if key in run.data.metrics and key in metrics:
            logged, now = run.data.metrics[key], metrics[key]
            verdict = "identical" if logged == now else f"differs by {now - logged:+.3g}"
            print(f"{key}: logged {logged!r}, rerun {now!r} ({verdict})")
