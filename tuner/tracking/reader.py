"""Reading a store back: the trials table, `tuner report`, and `tuner ui` (MLflow's own server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.core.metrics import TRIAL_METRICS
from tuner.core.params import from_text
from tuner.core.selection import (
    chosen_text,
    config_id,
    config_summary,
    pareto_front,
    parse_require,
    rank_by_config,
)
from tuner.errors import TunerError
from tuner.system.processes import end_session
from tuner.system.secrets import mask_uri
from tuner.tracking import tags
from tuner.tracking.runs import latest_search, trial_runs
from tuner.tracking.search_view import importances_of, report_html, searched_settings
from tuner.tracking.store import connect, existing_store, is_server, resolve_tracking_uri
from tuner.tracking.ui_view import UI_VIEW_KEY, bundle_text, format_problems


def _numeric(column: pd.Series) -> pd.Series:
    """A column of params (MLflow's text) or metrics as numbers when every value reads back as one
    (`tuner.core.params`); else as logged."""
    values = [from_text(v) if isinstance(v, str) else v for v in column]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return pd.to_numeric(pd.Series(values, index=column.index, dtype=object))
    return column


def trials_table(tracking_uri: str | None, experiment: str | None = None) -> pd.DataFrame:
    """One row per trial of the latest (or the given experiment's latest) search, best first.

    Columns: trial_id, status, params (those that vary across trials first), final metrics,
    run_id. `attrs` holds experiment, search_id, metric, mode and searched (the varying params).
    """
    client = connect(existing_store(tracking_uri))
    exp, parent = latest_search(client, experiment)
    runs = trial_runs(client, exp.experiment_id, parent.info.run_id)
    rows = [
        {
            "trial_id": r.data.tags.get(tags.TRIAL_ID, r.info.run_name),
            "status": r.info.status,
            **r.data.params,
            **r.data.metrics,
            "run_id": r.info.run_id,
            "config_id": _config_of(r),
        }
        for r in runs
    ]
    table = pd.DataFrame(
        rows, columns=None if rows else ["trial_id", "status", "run_id", "config_id"]
    )
    params = sorted({k for r in runs for k in r.data.params})
    metrics = [k for k in TRIAL_METRICS if k in table] + sorted(
        {k for r in runs for k in r.data.metrics} - set(TRIAL_METRICS)
    )
    for col in params + metrics:
        table[col] = _numeric(table[col])
    searched = [p for p in params if table[p].astype(str).nunique() > 1]
    table = table[
        [
            "trial_id",
            "status",
            *searched,
            *[p for p in params if p not in searched],
            *metrics,
            "run_id",
            "config_id",
        ]
    ]
    metrics_searched = parent.data.tags.get(tags.METRIC, "knn_accuracy").split(",")
    modes = parent.data.tags.get(tags.MODE, "max").split(",")
    metric, mode = metrics_searched[0], modes[0]
    if all(m in table for m in metrics_searched) and len(modes) == len(metrics_searched):
        # Best first by the search's Objective, as its summary ranked it; repeats by their mean.
        table = rank_by_config(table, metrics_searched, modes)
    table = table.reset_index(drop=True)
    table.attrs.update(
        experiment=exp.name,
        search_id=parent.data.tags.get(tags.SEARCH_ID, ""),
        metric=metric,
        mode=mode,
        metrics=metrics_searched,
        modes=modes,
        searched=searched,
        # what the search searched, as its summary weighed it: not the seed of `repeats`
        settings=searched_settings(parent) or searched,
        require=parse_require(parent.data.tags.get(tags.REQUIRE)),
    )
    return table


def _config_of(run: Any) -> str:
    """The run's configuration id: its tag, else (runs written before the tag, or by `tuner sync`)
    a hash of its params without the seed, the same for the runs of one configuration."""
    tag = run.data.tags.get(tags.CONFIG_ID)
    return tag if tag else "p-" + config_id(run.data.params)


def print_report(
    tracking_uri: str | None,
    experiment: str | None,
    csv_path: Path | None,
    html_path: Path | None = None,
) -> None:
    table = trials_table(tracking_uri, experiment)
    a = table.attrs
    shown = [
        c
        for c in ("trial_id", "pareto", *a["searched"], "knn_accuracy", "recon_error", "status")
        if c in table
    ]
    order = " and ".join(f"{m} ({d})" for m, d in zip(a["metrics"], a["modes"]))
    order = (
        f"the Pareto front of {order} first, then non-dominated rank"
        if len(a["metrics"]) > 1
        else order
    )
    stopped = int((table["status"] == "KILLED").sum()) if "status" in table else 0
    print(
        f"search {a['search_id']} in experiment {a['experiment']!r}: {len(table)} trials"
        f"{f' ({stopped} stopped early or interrupted: status KILLED)' if stopped else ''}, "
        f"sorted by {order}"
    )
    with pd.option_context(
        "display.width",
        160,
        "display.max_columns",
        12,
        "display.max_rows",
        500,
        "display.float_format",
        "{:.4g}".format,
    ):
        if table["config_id"].duplicated().any():
            _print_configs(table)
        print(table[shown].to_string(index=False))
        if {"knn_accuracy", "recon_error"} <= set(table.columns):
            front = pareto_front(table)
            print(
                f"\nPareto front of knn_accuracy (higher) vs recon_error (lower): {len(front)} "
                "trials"
            )
            print(front[shown].to_string(index=False))
        if a["require"]:
            tested = [c for c in ("test_knn_accuracy", "test_recon_error") if c in table]
            print(
                "\n" + chosen_text(table, a["metrics"], a["modes"], a["require"], [*shown, *tested])
            )
    imp = importances_of(table, a["settings"], a["metrics"])
    print("\n" + "\n".join(imp.lines()))
    if html_path is not None:
        write_html(tracking_uri, experiment, table, imp, Path(html_path))
    if csv_path is not None:
        try:
            Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(csv_path, index=False)
        except OSError as err:
            raise TunerError(
                f"--csv {str(csv_path)!r}: cannot write the table ({err.strerror})."
            ) from None
        print(f"\nwrote {csv_path}")


def write_html(
    tracking_uri: str | None, experiment: str | None, table: pd.DataFrame, imp: Any, path: Path
) -> None:
    """The search's report as one self-contained page (what its parent run holds as report.html)."""
    client = connect(existing_store(tracking_uri))
    exp, parent = latest_search(client, experiment)
    page = report_html(
        client,
        parent,
        table,
        table.attrs["metrics"],
        table.attrs["modes"],
        imp,
        trial_runs(client, exp.experiment_id, parent.info.run_id),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page)
    except OSError as err:
        raise TunerError(f"--html {str(path)!r}: cannot write the page ({err.strerror}).") from None
    print(f"\nwrote {path}")


def _print_configs(table: pd.DataFrame) -> None:
    """Seeds repeated (repeats > 1): mean and standard deviation per configuration, best first."""
    a = table.attrs
    configs = config_summary(table, a["metrics"], a["modes"], a["searched"])
    print(
        f"per configuration, mean and standard deviation over its seeds ({len(configs)} "
        "configurations):"
    )
    print(configs.to_string(index=False))
    print("\nper run:")


def ui_url(tracking_uri: str | None, host: str, port: int) -> str:
    """Where to point a browser: the runs of the newest search's experiment, grouped by search."""
    base = f"http://{host}:{port}"
    try:  # a missing store is not connected to: that would create an empty one
        exp, _ = latest_search(connect(existing_store(tracking_uri)), None)
    except TunerError:
        return base
    # MLflow 3.17's UI takes the view (GenAI or model training) from its own switch, default GenAI,
    # not from the experiment's mlflow.experimentKind tag: the link asks for the training view.
    query = f"viewStateShareKey={UI_VIEW_KEY}&workflowType=machine_learning"
    return f"{base}/#/experiments/{exp.experiment_id}/runs?{query}"


def _check_port_free(host: str, port: int) -> None:
    """The server would fail on a taken port or an unknown host with its own traceback: say it
    first."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except (OSError, OverflowError) as err:
        raise TunerError(
            f"tuner ui --host {host} --port {port}: cannot listen there ({err.strerror or err}). "
            "Pick a free --port, or a --host this machine has (127.0.0.1 for this machine only)."
        ) from None


def serve_ui(tracking_uri: str | None, host: str, port: int) -> int:
    """Run `mlflow server` on this store until it exits or Ctrl-C; returns its exit code."""
    uri = resolve_tracking_uri(tracking_uri)
    if is_server(uri):
        raise TunerError(
            f"tracking URI {mask_uri(uri)!r} is already a server: open it in a browser."
        )
    _check_port_free(host, port)
    existing_store(uri)  # else MLflow would create an empty SQLite file, or fail on a folder
    problems = format_problems(bundle_text())
    if problems:  # a newer MLflow's UI: the saved view would open as a plain one, without a word
        print(
            f"tuner: this MLflow's UI ({_mlflow_version()}) no longer reads the view tuner saves "
            f"as MLflow 3.17 did (missing: {'; '.join(problems)}); the link opens MLflow's "
            "default view.",
            file=sys.stderr,
        )
    print(
        f"MLflow UI for {mask_uri(uri)} (Ctrl-C stops it):\n  {ui_url(uri, host, port)}", flush=True
    )
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # The store URI goes by environment, not argv, where `ps` would show its credentials.
    # The server's job runner (GenAI evaluation jobs) is not needed to browse runs, and it
    # slows start-up and Ctrl-C by many seconds.
    env = {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": uri,
    }
    # A session of its own: its web workers outlive a plain terminate, and end_session finds them
    # all.
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP (see cli.py)
        # The server and its uvicorn worker end within a second of SIGTERM, slower on a busy
        # machine; SIGKILL after 1 s keeps the whole stop under 5 s there (SQLite survives a kill,
        # even mid-write).
        end_session(proc.pid, grace=1.0)
        proc.wait()
        return 0


def _mlflow_version() -> str:
    import mlflow

    return mlflow.__version__
