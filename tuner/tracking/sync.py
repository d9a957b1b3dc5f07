"""`tuner sync`: write into MLflow what a search's Tune results hold and MLflow lacks.

Tune keeps every trial's results in its storage path whether or not MLflow answered:
`<experiment dir>/<trial dir>/params.json` (the sampled config), `result.json` (one JSON line
per report, with every metric and `trial_id`), `error.txt` (a failed trial's traceback) and
the plots in the final checkpoint. Everything goes through SearchTracker, which finds runs by
tags and skips metric steps already logged, so a second sync writes nothing. Ray-free.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import yaml

from tuner.errors import TunerError
from tuner.space.load import trial_config
from tuner.storage import PLOTS_DIR, STATE_FILE, ExperimentStore, download_dir, experiment_store
from tuner.tracking.writer import SearchTracker
from tuner.trainer.metrics import TRIAL_METRICS
from tuner.tracking.store import connect, find_search, mask_uri, resolve_tracking_uri

# What an offline SearchTracker keeps for sync: <spool>/<trial id>/<plot files>, <spool>/search.json.
SPOOL_DIR = "tuner_mlflow_spool"
_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})_")  # Tune's trial dir: <trainable>_<trial id>_<n>_...


@dataclass(frozen=True)
class TrialRecord:
    """What Tune's storage holds about one trial."""

    trial_id: str
    config: dict[str, Any]
    results: list[dict[str, Any]]
    error: str | None
    plots: str | None  # storage path of the plots in the newest checkpoint that has them


def _read(fs: Any, path: str) -> str | None:
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        return stream.read().decode()


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Every complete line: a driver killed mid-write leaves a partial last one."""
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def read_trial(fs: Any, path: str) -> TrialRecord | None:
    """One trial directory; None when it is not one (no params.json)."""
    params = _read(fs, f"{path}/params.json")
    if params is None:
        return None
    results = _json_lines(_read(fs, f"{path}/result.json") or "")
    name = path.rstrip("/").rsplit("/", 1)[-1]
    found = _TRIAL_ID.search(name)
    trial_id = results[0]["trial_id"] if results and "trial_id" in results[0] else (found.group(1) if found else name)
    checkpoints = sorted((i for i in fs.get_file_info(pafs.FileSelector(path))
                          if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")),
                         key=lambda i: i.base_name, reverse=True)
    plots = next((f"{c.path}/{PLOTS_DIR}" for c in checkpoints
                  if fs.get_file_info(f"{c.path}/{PLOTS_DIR}").type == pafs.FileType.Directory), None)
    return TrialRecord(trial_id, json.loads(params), results, _read(fs, f"{path}/error.txt"), plots)


def read_trials(store: ExperimentStore) -> list[TrialRecord]:
    records = (read_trial(store.fs, info.path) for info in sorted(store.entries(), key=lambda i: i.base_name)
               if info.type == pafs.FileType.Directory)
    return [r for r in records if r is not None]


def trial_status(record: TrialRecord, iterations: int) -> str | None:
    """FINISHED once the last iteration was reported; else FAILED when Tune kept an error, else
    KILLED (stopped early or interrupted); None for a trial that never reported nor failed."""
    last = max((r.get("iteration", 0) for r in record.results), default=0)
    if last >= iterations:
        return "FINISHED"  # an error.txt left by a retried crash does not undo that
    if record.error is not None:
        return "FAILED"
    return "KILLED" if record.results else None


def search_status(spec: dict[str, Any], statuses: list[str]) -> str:
    """FINISHED when every trial of the search ended (KILLED ends one only under a scheduler)."""
    ended = {"FINISHED", "FAILED"} | ({"KILLED"} if spec.get("scheduler") else set())
    return "FINISHED" if len(statuses) >= spec.get("n_trials", 0) and set(statuses) <= ended else "KILLED"


def error_text(text: str) -> str:
    """As the live search logs it: the exception first, then the traceback."""
    lines = [line for line in text.splitlines() if line.strip()]
    return f"{lines[-1]}\n\n{text}" if lines else text


def _filesystem(storage: str) -> tuple[Any, str]:
    if "://" in storage:
        return pafs.FileSystem.from_uri(storage)
    return pafs.LocalFileSystem(), str(Path(storage).resolve())


def spool(storage: str, trial_id: str | None, status: str | None, artifact_dir: Path | None = None) -> None:
    """Keep beside Tune's results what only the driver knew: a trial's plots, the search's final status."""
    fs, path = _filesystem(storage)
    base = f"{path}/{SPOOL_DIR}" + (f"/{trial_id}" if trial_id else "")
    fs.create_dir(base, recursive=True)
    if artifact_dir is not None and Path(artifact_dir).is_dir():
        pafs.copy_files(str(artifact_dir), base, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    if status is not None:
        with fs.open_output_stream(f"{base}/search.json") as stream:
            stream.write(json.dumps({"status": status}).encode())


def read_spool(store: ExperimentStore) -> tuple[str | None, dict[str, str]]:
    """(the search's final status, trial id -> its kept plots) from an offline tracker's spool."""
    text = store.read_text(f"{SPOOL_DIR}/search.json")
    root = store.child(SPOOL_DIR)
    kept = store.fs.get_file_info(pafs.FileSelector(root)) if store.fs.get_file_info(root).type == \
        pafs.FileType.Directory else []
    return (json.loads(text)["status"] if text else None,
            {i.base_name: i.path for i in kept if i.type == pafs.FileType.Directory})


def find_store(storage_path: str | Path | None, experiment: str | None) -> ExperimentStore:
    """The experiment directory: `<storage_path>/<experiment>`, the path itself, or its one search."""
    root = str(storage_path or "ray_results")
    whole = root.rstrip("/") if "://" in root else str(Path(root).expanduser().resolve())
    parent, name = whole.rsplit("/", 1)
    here = experiment_store(parent or "/", name)
    for store in ([experiment_store(root, experiment)] if experiment else []) + [here]:
        if store.read_text(STATE_FILE) is not None:
            return store
    if experiment:
        raise TunerError(f"--storage-path {mask_uri(root)!r} --experiment {experiment!r}: no tuner search there "
                         f"(no {STATE_FILE}). Pass the --storage-path and --experiment the search ran with.")
    found = [experiment_store(whole, i.base_name) for i in here.entries() if i.type == pafs.FileType.Directory]
    found = [s for s in found if s.read_text(STATE_FILE) is not None]
    if len(found) != 1:
        names = ", ".join(sorted(s.name for s in found)) or "none"
        raise TunerError(f"--storage-path {mask_uri(root)!r}: {'several' if found else 'no'} tuner searches there "
                         f"({names}). Pass --experiment NAME, or the search's own directory as --storage-path.")
    return found[0]


def _trial_row(record: TrialRecord, status: str, searched: list[str]) -> dict[str, Any]:
    last = record.results[-1] if record.results else {}
    return {"trial_id": record.trial_id, "status": status,
            **{k: record.config.get(k) for k in searched},
            **{k: last[k] for k in ("iteration", *TRIAL_METRICS) if k in last}}


def sync_trial(tracker: SearchTracker, store: ExperimentStore, record: TrialRecord, params: dict[str, Any],
               status: str, plots: str | None) -> None:
    """The trial's run, params, metric history, plots, error and status: whichever are missing."""
    tracker.trial_started(record.trial_id, params, reopen=False)
    for result in record.results:
        tracker.log_metrics(record.trial_id, result, step=int(result.get("iteration", 0)))
    with tempfile.TemporaryDirectory() as tmp:
        if plots is not None:
            download_dir(store.fs, plots, Path(tmp))
        if status == "FAILED" and record.error:
            (Path(tmp) / "error.txt").write_text(error_text(record.error))
        if tracker.run_status(record.trial_id) != status or tracker.missing_artifacts(record.trial_id, Path(tmp)):
            tracker.trial_finished(record.trial_id, status, Path(tmp))


def _sync_trials(tracker: SearchTracker, store: ExperimentStore, spec: dict[str, Any],
                 kept_plots: dict[str, str]) -> pd.DataFrame:
    """Every trial that ran, synced; one row each (id, status, searched values, last metrics)."""
    rows = []
    for record in read_trials(store):
        cfg = trial_config(spec.get("fixed", {}), record.config)
        status = trial_status(record, cfg.iterations)
        if status is not None:
            sync_trial(tracker, store, record, cfg.to_dict(), status, record.plots or kept_plots.get(record.trial_id))
            rows.append(_trial_row(record, status, list(spec.get("params", {}))))
    return pd.DataFrame(rows, columns=None if rows else ["trial_id", "status"])


def sync_search(storage_path: str | Path | None = None, experiment: str | None = None,
                tracking_uri: str | None = None, verbose: bool = True) -> Counter:
    """Write what MLflow lacks of one search; returns what was written (empty: it was complete)."""
    uri = resolve_tracking_uri(tracking_uri)
    store = find_store(storage_path, experiment)
    state = json.loads(store.read_text(STATE_FILE))
    search_id, spec = str(state["search_id"]), state["spec"]
    found = find_search(connect(uri), search_id)
    name = experiment or (found[0].name if found else spec.get("name", store.name))
    params = {k: spec[k] for k in ("metric", "mode", "search", "samples", "n_trials") if k in spec}
    tracker = SearchTracker.open(uri, name, search_id, "# rebuilt by tuner sync from the resolved spec\n"
                                 + yaml.safe_dump(spec, sort_keys=False), spec,
                                 {**params, "storage": mask_uri(store.uri)}, resume=True, reopen=False)
    tracker.spool = None  # the spool is what this reads
    kept_status, kept_plots = read_spool(store)
    table = _sync_trials(tracker, store, spec, kept_plots)
    status = kept_status or search_status(spec, list(table["status"]))
    if +tracker.written or tracker.parent_status == "RUNNING":  # else the parent is as the search left it
        tracker.finish(table, spec.get("metric", ["knn_accuracy"]), spec.get("mode", ["max"]), status)
    if tracker.offline:
        raise TunerError(f"MLflow at {mask_uri(uri)} stopped answering during the sync: run it again once it answers.")
    if kept_status is not None or kept_plots:  # all in MLflow now; a later search may spool afresh
        store.fs.delete_dir(store.child(SPOOL_DIR))
    if verbose:
        done = ", ".join(f"{n} {k}" for k, n in sorted((+tracker.written).items())) or "nothing was missing"
        print(f"synced search {search_id} ({len(table)} trials, {tracker.parent_status.lower()}) from "
              f"{mask_uri(store.uri)} into MLflow experiment {name!r} at {mask_uri(uri)}: {done}")
    return +tracker.written
