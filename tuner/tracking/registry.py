"""Trained models in MLflow: log an EmbeddingModel to its trial's run, register it, load it back.

A model is an MLflow 3 logged model (`mlflow.pytorch`, pt2 format: no pickle to trust when
loading) linked to the trial's run. Its graph maps featurized rows to embeddings, so
`mlflow.pytorch.load_model(uri)` works anywhere torch does; `extra_files/` holds the
EmbeddingModel (embedder.json + state_dict.pt) that `load_model` rebuilds, with `.embed`,
`.reconstruct` and `.config` on raw inputs.

Registry rule: every registered version carries the search id, trial id and final metrics as
tags; the alias `champion` moves to a new version only when it is better than the current
champion by the search's Objective (tuner.core.objective: it dominates it on the search's metrics,
within the `require:` bounds first; one metric: a strictly better value). A version on the same
front as the champion does not move it, nor does one when the champion lacks a searched metric:
nothing shows the new one is better (a champion lacking a bounded metric is outside that bound).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuner.core.objective import Objective
from tuner.embedding import CONFIG_FILE, EmbeddingModel
from tuner.errors import TunerError, first_line
from tuner.system.secrets import mask_uri
from tuner.tracking.store import connect, existing_store, resolve_tracking_uri

MODEL_NAME = (
    "embedding_model"  # the logged model's name, so runs:/<run id>/embedding_model finds it
)
CHAMPION = "champion"
EXAMPLE_ROWS = 5  # > 1: torch.export keeps the batch dimension dynamic only then
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Registered:
    name: str
    version: int
    champion: int | None  # the version holding the alias afterwards
    moved: bool  # whether this version took the alias


@contextlib.contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's model logging reads the global tracking URI: MLflow's own context sets it for
    the call; $MLFLOW_TRACKING_URI, which it clears on the way out, is put back as it was."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = before


def _client_and_uri(client_or_uri: Any) -> tuple[Any, str]:
    if isinstance(client_or_uri, str) or client_or_uri is None:
        uri = resolve_tracking_uri(client_or_uri)
        return connect(uri), uri
    return client_or_uri, client_or_uri.tracking_uri


def _quiet_downloads() -> None:
    # MLflow draws a bar per artifact it downloads, logging a model or loading one: noise on a
    # search's console and above tuner embed's own progress bar. Set the variable to keep them.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def log_model(
    client_or_uri: Any,
    run_id: str,
    model: EmbeddingModel,
    input_example: np.ndarray,
    tags: dict[str, str] | None = None,
    featurized: bool = False,
) -> Any:
    """Log `model` as the logged model `embedding_model` of run `run_id`; returns MLflow's
    ModelInfo.

    `input_example` is raw input (a few images), or with `featurized` already their features
    (un-normalized); the signature and example are the features, what the graph takes.
    """
    import mlflow
    import torch

    _quiet_downloads()
    client, uri = _client_and_uri(client_or_uri)
    run = client.get_run(run_id)
    # Created here, in the run's experiment: left to MLflow, a logged model lands in the fluent
    # API's active experiment (Default), whatever experiment its run is in.
    logged = client.create_logged_model(
        run.info.experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        tags={str(k): str(v) for k, v in (tags or {}).items()},
        params=dict(run.data.params),
        model_type="embedding",
    )
    example = np.asarray(input_example)[:EXAMPLE_ROWS]
    features = np.ascontiguousarray(
        example if featurized else model.features(example), dtype=np.float32
    )
    meta = {
        "tuner_format": 1,
        "load_with": "tuner.load_model(uri)",
        "forward_input": f"featurized rows ({model.config.feature_extractor}, un-normalized), "
        f"shape (N, {model.settings.n_features})",
    }
    with tempfile.TemporaryDirectory() as tmp, using_tracking_uri(uri):
        files = [str(p) for p in model.save(tmp)]
        return mlflow.pytorch.log_model(
            model.cpu().eval(),
            name=MODEL_NAME,
            run_id=run_id,
            input_example=features,
            serialization_format="pt2",
            extra_files=files,
            metadata=meta,
            model_id=logged.model_id,
            # Stated, not inferred: inference starts a subprocess that loads the model (seconds).
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"mlflow=={mlflow.__version__}",
            ],
        )


def warm_up_model_logging() -> None:
    """Pay model logging's one-time costs now, on a tiny model saved to a temporary folder: the
    first torch.export imports torch._dynamo and builds its tracing machinery, and MLflow's first
    save scans the installed distributions and loads the model back to check its example (~3 s
    of CPU in all). Run on a core the search's last trials leave free, they fall on no one's
    critical path: the chosen model's `log_model` then takes ~0.5 s instead of ~3.5 s."""
    import mlflow.pytorch
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.pytorch.save_model(
            torch.nn.Linear(2, 2),
            Path(tmp) / "model",
            serialization_format="pt2",
            input_example=np.zeros((EXAMPLE_ROWS, 2), dtype=np.float32),
            pip_requirements=["torch", "mlflow"],
        )


def model_uri(uri_or_run_id: str) -> str:
    """A bare run id means the model logged to that run."""
    text = str(uri_or_run_id).strip()
    return f"runs:/{text}/{MODEL_NAME}" if _RUN_ID.match(text) else text


def load_model(uri: str, tracking_uri: str | None = None) -> EmbeddingModel:
    """`models:/name@champion`, `models:/name/3`, `models:/m-<id>`, `runs:/<run id>/embedding_model`
    or a bare run id -> the EmbeddingModel (`.embed`, `.reconstruct`, `.config`)."""
    import mlflow

    _quiet_downloads()
    # downloading from a missing store creates it
    resolved = existing_store(tracking_uri, f"model {uri!r}")
    source = model_uri(uri)
    # runs:/ URIs find their logged model through the global tracking URI: set it too.
    with tempfile.TemporaryDirectory() as tmp, using_tracking_uri(resolved):
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=tmp, tracking_uri=resolved, registry_uri=resolved
            )
        except Exception as err:  # noqa: BLE001 - MLflow raises many types for "not there"
            first = first_line(err)
            raise TunerError(
                f"model {uri!r}: not found in {mask_uri(resolved)} ({mask_uri(first)}). Expected "
                f"models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/{MODEL_NAME} or a run id "
                f"of a trial whose model was logged; pass --tracking-uri for another store."
            ) from None
        folder = Path(local) / "extra_files"
        if not (folder / CONFIG_FILE).is_file():
            raise TunerError(
                f"model {uri!r} is not a tuner model: it has no extra_files/{CONFIG_FILE}."
            )
        return EmbeddingModel.load(folder)


def register_model(
    client: Any,
    name: str,
    model_info: Any,
    run_id: str,
    tags: dict[str, Any],
    objective: Objective | str,
    mode: str | None = None,
) -> Registered:
    """A new version of `name` (created when missing) tagged with `tags`; `champion` moves to it
    only when it is better by the search's `objective` (tags hold its metrics) than the champion
    (a metric name and `mode` stand for a one-metric objective)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="Embedding models registered by tuner searches."
        )
    text_tags = {str(k): str(v) for k, v in tags.items()}
    with using_tracking_uri(client.tracking_uri):  # the registry resolves models:/m-<id> through it
        version = client.create_model_version(
            name,
            source=model_info.model_uri,
            run_id=run_id,
            tags=text_tags,
            model_id=model_info.model_id,
        )
    current = champion_version(client, name)
    objective = Objective.of(objective, mode) if isinstance(objective, str) else objective
    moved = current is None or beats(objective, text_tags, current.tags)
    if moved:
        client.set_registered_model_alias(name, CHAMPION, version.version)
    return Registered(
        name, int(version.version), int(version.version) if moved else int(current.version), moved
    )


def champion_version(client: Any, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def beats(objective: Objective, new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """The Objective's `better` (it dominates: one metric, a better value; bounds first). A
    champion without every searched metric keeps the alias: nothing shows the new one is better.
    One without a bounded metric is not within that bound (require's rule: a missing value is
    not within), so a version within it is better."""
    needed = [*objective.metric, *objective.require]
    if any(_number(old.get(m)) is None or _number(new.get(m)) is None for m in objective.metric):
        return False
    return objective.better(
        {m: _number(new.get(m)) for m in needed}, {m: _number(old.get(m)) for m in needed}
    )


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
