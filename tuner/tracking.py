"""MLflow logging from the driver (the one writer), and the reports that read it back.

Everything goes through an explicit `MlflowClient(tracking_uri=...)`: the fluent API's
global state (`mlflow.set_experiment` exports MLFLOW_EXPERIMENT_ID) misroutes Ray's runs.
Runs are found by tags, never by an in-memory map, so a resumed search reuses its runs:
parent `tuner.role=search` + `tuner.search_id`; trial `mlflow.parentRunId` + `tuner.trial_id`.
MLflow is imported inside functions so `import tuner.tracking` stays cheap.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from tuner.errors import TunerError

TRIAL_METRICS = ("knn_accuracy", "recon_error", "loss", "metric_loss", "recon_loss", "kl",
                 "fine_knn_accuracy", "train_seconds", "seconds")
STATUSES = ("FINISHED", "FAILED", "KILLED")
PARENT_FILTER = "tags.`tuner.role` = 'search'"
_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")


def mask_uri(text: str) -> str:
    """`scheme://user:pass@host` -> `scheme://***@host`, anywhere in a text."""
    return _CREDENTIALS.sub(r"\1***@", str(text))


def resolve_tracking_uri(uri: str | None) -> str:
    """None -> $MLFLOW_TRACKING_URI or sqlite:///<abs cwd>/mlflow.db; relative SQLite paths made absolute."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve()}/mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def connect(tracking_uri: str | None):
    """A client whose store answered once; TunerError (credentials masked) when it does not."""
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    parts = urlsplit(uri)
    try:
        if parts.scheme in ("http", "https"):
            # A TCP probe answers in seconds; MLflow's own HTTP retries take minutes by default.
            address = (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
            timeout = float(os.environ.get("TUNER_TRACKING_CONNECT_TIMEOUT", 5))
            socket.create_connection(address, timeout=timeout).close()
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - any failure here means the URI is unusable
        raise TunerError(f"MLflow tracking URI {mask_uri(uri)!r} cannot be used: {mask_uri(err)}. "
                         "Pass --tracking-uri (or set MLFLOW_TRACKING_URI) to a running MLflow server "
                         "(http://host:port) or a database such as sqlite:////abs/path/mlflow.db.") from None
    return client


def _experiment_id(client, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        db = uri[len("sqlite:///"):] if uri.startswith("sqlite:////") else None
        # Without a location MLflow puts artifacts under the cwd of whoever created the experiment.
        location = str(Path(db).parent / "mlartifacts" / re.sub(r"[^\w.-]", "_", name)) if db else None
        try:
            return client.create_experiment(name, artifact_location=location)
        except Exception:  # noqa: BLE001 - another driver created it first: use theirs
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        raise TunerError(f"MLflow experiment {name!r} is deleted in {mask_uri(uri)!r}: restore it "
                         "(mlflow experiments restore) or pass another --experiment.")
    return exp.experiment_id


def _param_text(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _log_params(client, run_id: str, params: dict[str, Any], existing: dict[str, str] | None = None) -> None:
    """MLflow params are immutable: keys already on the run (a resumed run) are left alone."""
    from mlflow.entities import Param

    todo = [Param(str(k), _param_text(v)) for k, v in params.items() if k not in (existing or {})]
    for start in range(0, len(todo), 100):  # MLflow's per-batch limit
        client.log_batch(run_id, params=todo[start:start + 100])


def _log_text(client, run_id: str, text: str, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_text(text)
        client.log_artifact(run_id, str(Path(tmp) / name))


def _yaml_text(spec_yaml: str) -> str:
    """The YAML text itself, or the text of the file it names."""
    try:
        if "\n" not in spec_yaml and spec_yaml.endswith((".yaml", ".yml")) and Path(spec_yaml).is_file():
            return Path(spec_yaml).read_text()
    except OSError:  # e.g. a one-line YAML text too long for a file name
        pass
    return spec_yaml


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@dataclass
class SearchTracker:
    client: Any
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    _runs: dict[str, str] = field(default_factory=dict)
    _last_step: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def open(cls, tracking_uri: str, experiment: str, search_id: str, spec_yaml: str, spec_resolved: dict,
             search_params: dict[str, Any], resume: bool) -> "SearchTracker":
        """Create (or, resuming, reopen) the parent run of a search and log its spec.

        spec_yaml is the search file's text as written (a path to the file is also accepted).
        """
        uri = resolve_tracking_uri(tracking_uri)
        client = connect(uri)
        exp_id = _experiment_id(client, experiment, uri)
        found = client.search_runs([exp_id], f"{PARENT_FILTER} and tags.`tuner.search_id` = '{search_id}'",
                                   max_results=1) if resume else []
        tags = {"tuner.role": "search", "tuner.search_id": search_id}
        tags.update({f"tuner.{k}": ",".join(_as_list(search_params[k])) for k in ("metric", "mode")
                     if k in search_params})
        if found:
            run = found[0]
            client.update_run(run.info.run_id, status="RUNNING")
        else:
            run = client.create_run(exp_id, tags=tags, run_name=search_id)
        tracker = cls(client, uri, exp_id, run.info.run_id)
        _log_params(client, tracker.parent_run_id, search_params, run.data.params)
        _log_text(client, tracker.parent_run_id, _yaml_text(spec_yaml), "search.yaml")
        _log_text(client, tracker.parent_run_id, json.dumps(spec_resolved, indent=2, default=str), "spec.json")
        return tracker

    def trial_started(self, trial_id: str, params: dict[str, Any]) -> str:
        """The trial's nested run: the one already tagged with this trial id, else a new one."""
        if trial_id in self._runs:
            return self._runs[trial_id]
        found = self.client.search_runs(
            [self.experiment_id],
            f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and tags.`tuner.trial_id` = '{trial_id}'",
            max_results=1)
        if found:
            run = found[0]
            self.client.update_run(run.info.run_id, status="RUNNING")
            # Fetched once: re-reported steps at or below these are already in the history.
            self._last_step[trial_id] = {
                key: max(m.step for m in self.client.get_metric_history(run.info.run_id, key))
                for key in run.data.metrics}
        else:
            tags = {"mlflow.parentRunId": self.parent_run_id, "tuner.trial_id": trial_id, "tuner.role": "trial"}
            run = self.client.create_run(self.experiment_id, tags=tags, run_name=trial_id)
            self._last_step[trial_id] = {}
        self._runs[trial_id] = run.info.run_id
        _log_params(self.client, run.info.run_id, params, run.data.params)
        return run.info.run_id

    def log_metrics(self, trial_id: str, metrics: dict[str, float], step: int) -> None:
        """The known trial metrics present in `metrics`, at `step`, skipping steps already logged."""
        from mlflow.entities import Metric

        run_id = self.trial_started(trial_id, {})
        last = self._last_step[trial_id]
        now = int(time.time() * 1000)
        batch = [Metric(key, float(metrics[key]), now, int(step)) for key in TRIAL_METRICS
                 if isinstance(metrics.get(key), numbers.Real) and not isinstance(metrics[key], bool)
                 and int(step) > last.get(key, -math.inf)]
        if batch:
            self.client.log_batch(run_id, metrics=batch)
            last.update({m.key: int(step) for m in batch})

    def trial_finished(self, trial_id: str, status: str, artifact_dir: Path | None = None,
                       error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"trial status {status!r}: expected one of {', '.join(STATUSES)}")
        run_id = self.trial_started(trial_id, {})
        if artifact_dir is not None and Path(artifact_dir).is_dir() and any(Path(artifact_dir).iterdir()):
            self.client.log_artifacts(run_id, str(artifact_dir))
        if error:
            _log_text(self.client, run_id, error, "error.txt")
        self.client.set_terminated(run_id, status)

    def log_baselines(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(str(k), float(v), now, 0) for k, v in metrics.items()]
        for start in range(0, len(batch), 1000):
            self.client.log_batch(self.parent_run_id, metrics=batch[start:start + 1000])

    def finish(self, table: pd.DataFrame, metric: str | list[str], mode: str | list[str],
               status: str = "FINISHED") -> None:
        """Best trial's metrics (by the first metric), summary.csv and the Pareto plot; ends the parent."""
        from mlflow.entities import Metric, RunTag

        from tuner.plots import plot_pareto

        metrics, modes = _as_list(metric), _as_list(mode)
        tags = [RunTag("tuner.metric", ",".join(metrics)), RunTag("tuner.mode", ",".join(modes))]
        best = _best_row(table, metrics[0], modes[0])
        if best is not None:
            now = int(time.time() * 1000)
            values = [Metric(f"best_{k}", float(best[k]), now, 0) for k in TRIAL_METRICS
                      if isinstance(best.get(k), numbers.Real) and pd.notna(best[k])]
            if "trial_id" in best:
                tags.append(RunTag("tuner.best_trial_id", str(best["trial_id"])))
            self.client.log_batch(self.parent_run_id, metrics=values)
        self.client.log_batch(self.parent_run_id, tags=tags)
        with tempfile.TemporaryDirectory() as tmp:
            table.to_csv(Path(tmp) / "summary.csv", index=False)
            self.client.log_artifact(self.parent_run_id, str(Path(tmp) / "summary.csv"))
            if {"recon_error", "knn_accuracy"} <= set(table.columns):
                plot_pareto(table, Path(tmp) / "pareto.png")
                self.client.log_artifact(self.parent_run_id, str(Path(tmp) / "pareto.png"))
        self.client.set_terminated(self.parent_run_id, status)


def _best_row(table: pd.DataFrame, metric: str, mode: str) -> pd.Series | None:
    if metric not in table or table[metric].notna().sum() == 0:
        return None
    values = pd.to_numeric(table[metric], errors="coerce").reset_index(drop=True)
    return table.iloc[values.idxmax() if mode == "max" else values.idxmin()]  # positional: index may repeat


# ------------------------------------------------------------------ reading back


def _all_pages(fetch) -> list:
    items, token = [], None
    while True:
        page = fetch(token)
        items += list(page)
        token = page.token
        if not token:
            return items


def _latest_search(client, experiment: str | None):
    """(experiment, parent run) of the newest search, optionally within one experiment."""
    exps = _all_pages(lambda token: client.search_experiments(max_results=1000, page_token=token))
    chosen = [e for e in exps if experiment is None or e.name == experiment]
    runs = client.search_runs([e.experiment_id for e in chosen], PARENT_FILTER,
                              order_by=["attributes.start_time DESC"], max_results=1) if chosen else []
    if not runs:
        with_searches = sorted({e.name for e in exps
                                if client.search_runs([e.experiment_id], PARENT_FILTER, max_results=1)})
        what = f"experiment {experiment!r}" if experiment else "this store"
        raise TunerError(f"no tuner search found in {what}. Experiments with searches: "
                         f"{', '.join(with_searches) or 'none (run `tuner search` first)'}.")
    return next(e for e in chosen if e.experiment_id == runs[0].info.experiment_id), runs[0]


def _numeric(column: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column


def trials_table(tracking_uri: str | None, experiment: str | None = None) -> pd.DataFrame:
    """One row per trial of the latest (or the given experiment's latest) search, best first.

    Columns: trial_id, status, params (those that vary across trials first), final metrics,
    run_id. `attrs` holds experiment, search_id, metric, mode and searched (the varying params).
    """
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:////") and not Path(uri[len("sqlite:///"):]).is_file():
        raise TunerError(f"no MLflow store at {uri[len('sqlite:///'):]!r}: run `tuner search` there first, "
                         "or pass --tracking-uri (or MLFLOW_TRACKING_URI) naming the store of your searches.")
    client = connect(uri)
    exp, parent = _latest_search(client, experiment)
    runs = _all_pages(lambda token: client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        max_results=1000, page_token=token))
    rows = [{"trial_id": r.data.tags.get("tuner.trial_id", r.info.run_name), "status": r.info.status,
             **r.data.params, **r.data.metrics, "run_id": r.info.run_id} for r in runs]
    table = pd.DataFrame(rows, columns=None if rows else ["trial_id", "status", "run_id"])
    params = sorted({k for r in runs for k in r.data.params})
    metrics = [k for k in TRIAL_METRICS if k in table] + sorted({k for r in runs for k in r.data.metrics}
                                                                - set(TRIAL_METRICS))
    for col in params + metrics:
        table[col] = _numeric(table[col])
    searched = [p for p in params if table[p].astype(str).nunique() > 1]
    table = table[["trial_id", "status", *searched, *[p for p in params if p not in searched], *metrics, "run_id"]]
    metric = parent.data.tags.get("tuner.metric", "knn_accuracy").split(",")[0]
    mode = parent.data.tags.get("tuner.mode", "max").split(",")[0]
    if metric in table:
        table = table.sort_values(metric, ascending=mode == "min", na_position="last", kind="stable")
    table = table.reset_index(drop=True)
    table.attrs.update(experiment=exp.name, search_id=parent.data.tags.get("tuner.search_id", ""),
                       metric=metric, mode=mode, searched=searched)
    return table


def print_report(tracking_uri: str | None, experiment: str | None, csv_path: Path | None) -> None:
    from tuner.plots import pareto_front

    table = trials_table(tracking_uri, experiment)
    a = table.attrs
    shown = [c for c in ("trial_id", *a["searched"], "knn_accuracy", "recon_error", "status") if c in table]
    print(f"search {a['search_id']} in experiment {a['experiment']!r}: {len(table)} trials, "
          f"sorted by {a['metric']} ({a['mode']})")
    with pd.option_context("display.width", 160, "display.max_columns", 12, "display.max_rows", 500,
                           "display.float_format", "{:.4g}".format):
        print(table[shown].to_string(index=False))
        if {"knn_accuracy", "recon_error"} <= set(table.columns):
            front = pareto_front(table)
            print(f"\nPareto front of knn_accuracy (higher) vs recon_error (lower): {len(front)} trials")
            print(front[shown].to_string(index=False))
    if csv_path is not None:
        try:
            Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(csv_path, index=False)
        except OSError as err:
            raise TunerError(f"--csv {str(csv_path)!r}: cannot write the table ({err.strerror}).") from None
        print(f"\nwrote {csv_path}")


def serve_ui(tracking_uri: str | None, host: str, port: int) -> int:
    """Run `mlflow server` on this store until it exits or Ctrl-C; returns its exit code."""
    uri = resolve_tracking_uri(tracking_uri)
    if urlsplit(uri).scheme in ("http", "https"):
        raise TunerError(f"tracking URI {mask_uri(uri)!r} is already a server: open it in a browser.")
    print(f"MLflow UI on http://{host}:{port} for {mask_uri(uri)} (Ctrl-C stops it)", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--host", host, "--port", str(port), "--workers", "1"]
    # The server's job runner (GenAI evaluation jobs) is not needed to browse runs, and it
    # slows start-up and Ctrl-C by many seconds.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
