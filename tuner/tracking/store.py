"""MLflow plumbing: which store, whether it answers, the experiment in it, and small writes.

Shared by the writer, the reader and `tuner sync`; finding runs in a store lives in `runs`.
Credentials in a tracking URI never reach a message: everything shown goes through `mask_uri`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tuner.core.params import FULL_PARAMS, PARAM_LIMIT, is_cut, params_text, stored_text
from tuner.errors import TunerError
from tuner.system.secrets import mask_uri
from tuner.tracking.ui_view import GROUP_BY, VIEW_TAG, envelope

# MLflow retries a dead server for ~4 minutes by default, stalling Tune's event loop each time;
# ~10 s covers a restart blip. Set these variables yourself to choose otherwise.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
EXPERIMENT_KIND = "mlflow.experimentKind"


def resolve_tracking_uri(uri: str | None) -> str:
    """None -> $MLFLOW_TRACKING_URI or sqlite:///<abs cwd>/mlflow.db; relative SQLite paths made
    absolute."""
    uri = (
        uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{Path.cwd().resolve()}/mlflow.db"
    )
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    return uri


def is_server(uri: str) -> bool:
    return urlsplit(uri).scheme in ("http", "https")


def existing_store(tracking_uri: str | None, what: str = "") -> str:
    """The resolved URI of a store that is already there, for commands that only read one (`what`,
    such as "--from-run ID", starts the message): connecting to a missing SQLite file creates it,
    empty, and MLflow 3 refuses a folder (its old file store) with a traceback of its own. A server
    or another database passes: connecting is its check."""
    uri = resolve_tracking_uri(tracking_uri)
    where, scheme = f"{what}: " if what else "", urlsplit(uri).scheme
    if uri.startswith("sqlite:////"):
        path = Path(uri[len("sqlite:///") :].split("?")[0])
        found = path.is_file()
    # a path: a file store
    elif scheme in ("", "file") and uri not in ("databricks", "databricks-uc"):
        path = Path(urlsplit(uri).path if scheme == "file" else uri).resolve()
        found = path.exists()
        if path.is_file():
            raise TunerError(
                f"{where}tracking URI {mask_uri(uri)!r} is a plain path, which MLflow reads as a "
                f"folder of runs; for the SQLite file there pass sqlite:///{path}."
            )
        if found and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1"):
            raise TunerError(
                f"{where}tracking URI {mask_uri(uri)!r} is a folder, which MLflow reads as its old "
                "file store, no longer served by MLflow 3: pass a database such as "
                "sqlite:////abs/path/mlflow.db (`mlflow migrate-filestore` converts a folder of "
                "runs) or a server http://host:port."
            )
    else:
        return uri
    if not found:
        raise TunerError(
            f"{where}no MLflow store at {str(path)!r}: run `tuner search` there first, or pass "
            "--tracking-uri (or MLFLOW_TRACKING_URI) naming the store of your searches."
        )
    return uri


def connect(tracking_uri: str | None):
    """A client whose store answered once; TunerError (credentials masked) when it does not."""
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    parts = urlsplit(uri)
    try:
        if is_server(uri):
            for key, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
            # A TCP probe answers in seconds; MLflow's own HTTP retries take minutes by default.
            address = (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
            timeout = float(os.environ.get("TUNER_TRACKING_CONNECT_TIMEOUT", 5))
            socket.create_connection(address, timeout=timeout).close()
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - any failure here means the URI is unusable
        raise TunerError(
            f"MLflow tracking URI {mask_uri(uri)!r} cannot be used: {mask_uri(err)}. "
            "Pass --tracking-uri (or set MLFLOW_TRACKING_URI) to a running MLflow server "
            "(http://host:port) or a database such as sqlite:////abs/path/mlflow.db."
        ) from None
    return client


def unreachable(err: BaseException) -> bool:
    """The store did not answer (refused, timed out, 5xx after retries, database locked): not a bad
    request."""
    import requests

    transport = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.RetryError,
        ConnectionError,
        TimeoutError,
    )
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, transport) or type(seen).__name__ == "OperationalError":  # sqlalchemy's
            return True
        response = getattr(seen, "response", None)
        if (
            isinstance(seen, requests.exceptions.HTTPError)
            and response is not None
            and response.status_code >= 500
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    # MLflow's REST client re-raises transport errors as text.
    return any(
        s in str(err) for s in ("Max retries exceeded", "Connection refused", "Connection aborted")
    )


def experiment_id(client, name: str, uri: str) -> str:
    """The id of experiment `name`, created once (artifacts beside a SQLite file); never a deleted
    one."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        db = uri[len("sqlite:///") :] if uri.startswith("sqlite:////") else None
        # Without a location MLflow puts artifacts under the cwd of whoever created the experiment.
        location = (
            str(Path(db).parent / "mlartifacts" / re.sub(r"[^\w.-]", "_", name)) if db else None
        )
        try:
            client.create_experiment(name, artifact_location=location)
        except Exception:  # noqa: BLE001 - another driver created it first: use theirs
            pass
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise TunerError(
                f"MLflow experiment {name!r} could not be created in {mask_uri(uri)!r}."
            )
    if exp.lifecycle_stage == "deleted":
        raise TunerError(
            f"MLflow experiment {name!r} is deleted in {mask_uri(uri)!r}: restore it "
            "(mlflow experiments restore) or pass another --experiment."
        )
    # MLflow's UI opens it with `?viewStateShareKey=tuner` (`tuner ui`'s link): runs grouped by
    # search, so the trials show without unfolding their parent; a search's end fills in its
    # columns and charts (tuner.tracking.search_view).
    if VIEW_TAG not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, VIEW_TAG, envelope({"groupBy": GROUP_BY}))
    if EXPERIMENT_KIND not in exp.tags:  # the UI opens its model-training view, not the GenAI one
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND, "custom_model_development")
    return exp.experiment_id


def log_params(
    client, run_id: str, params: dict[str, Any], existing: dict[str, str] | None = None
) -> int:
    """MLflow params are immutable: keys already on the run (a resumed run) are left alone."""
    from mlflow.entities import Param

    texts = params_text({k: v for k, v in params.items() if k not in (existing or {})})
    if any(len(text) > PARAM_LIMIT for text in texts.values()):
        log_text(client, run_id, json.dumps(texts, indent=1), FULL_PARAMS)
    todo = [Param(k, stored_text(text)) for k, text in texts.items()]
    for start in range(0, len(todo), 100):  # MLflow's per-batch limit
        client.log_batch(run_id, params=todo[start : start + 100])
    return len(todo)


def whole_params(client, run: Any) -> dict[str, str]:
    """A run's params as they were logged: cut ones (stored_text) read back from FULL_PARAMS."""
    params = dict(run.data.params)
    if any(is_cut(value) for value in params.values()):
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small file
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run.info.run_id, FULL_PARAMS, tmp)
            params.update(json.loads(Path(path).read_text()))
    return params


def log_text(client, run_id: str, text: str, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_text(text)
        client.log_artifact(run_id, str(Path(tmp) / name))


def artifact_names(client, run_id: str) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id)}
