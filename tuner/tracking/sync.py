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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import yaml

from tuner.core.selection import (
    TrialOutcome,
    error_summary,
    results_table,
    search_status,
    trial_status,
)
from tuner.errors import TunerError
from tuner.space.spec import trial_record
from tuner.system.processes import hold_point
from tuner.system.secrets import mask_uri
from tuner.system.storage_guard import check_private
from tuner.system.tune_storage import (
    PLOTS_DIR,
    SPOOL_DIR,
    STATE_FILE,
    ExperimentDir,
    download_dir,
    experiment_dir,
    read_spool,
    read_state,
)
from tuner.tracking.runs import find_search
from tuner.tracking.store import connect, resolve_tracking_uri
from tuner.tracking.writer import SearchTracker

_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})_")  # Tune's trial dir: <trainable>_<trial id>_<n>_...


@dataclass(frozen=True)
class StoredTrial:
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


def read_trial(fs: Any, path: str) -> StoredTrial | None:
    """One trial directory; None when it is not one (no params.json) or not yet a whole one: a
    params.json cut short, as a disk that filled while Tune wrote it leaves it. Tune writes it again
    when the trial next starts (--resume), and the sync after the run reads it then."""
    text = _read(fs, f"{path}/params.json")
    if text is None:
        return None
    try:
        params = json.loads(text)
    except json.JSONDecodeError:
        return None
    results = _json_lines(_read(fs, f"{path}/result.json") or "")
    name = path.rstrip("/").rsplit("/", 1)[-1]
    found = _TRIAL_ID.search(name)
    trial_id = (
        results[0]["trial_id"]
        if results and "trial_id" in results[0]
        else (found.group(1) if found else name)
    )
    checkpoints = sorted(
        (
            i
            for i in fs.get_file_info(pafs.FileSelector(path))
            if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")
        ),
        key=lambda i: i.base_name,
        reverse=True,
    )
    plots = next(
        (
            f"{c.path}/{PLOTS_DIR}"
            for c in checkpoints
            if fs.get_file_info(f"{c.path}/{PLOTS_DIR}").type == pafs.FileType.Directory
        ),
        None,
    )
    return StoredTrial(trial_id, params, results, _read(fs, f"{path}/error.txt"), plots)


def read_trials(exp_dir: ExperimentDir) -> list[StoredTrial]:
    records = (
        read_trial(exp_dir.fs, info.path)
        for info in sorted(exp_dir.entries(), key=lambda i: i.base_name)
        if info.type == pafs.FileType.Directory
    )
    return [r for r in records if r is not None]


def record_status(record: StoredTrial, iterations: int) -> str | None:
    last = max((r.get("iteration", 0) for r in record.results), default=0)
    return trial_status(
        last, iterations, error=record.error is not None, reported=bool(record.results)
    )


def find_experiment_dir(storage_path: str | Path | None, experiment: str | None) -> ExperimentDir:
    """The experiment directory: `<storage_path>/<experiment>`, the path itself, or its one
    search."""
    root = str(storage_path or "ray_results")
    base, question, query = root.partition("?") if "://" in root else (root, "", "")
    whole = base.rstrip("/") if "://" in root else str(Path(root).expanduser().resolve())
    if "://" not in root and Path(whole).is_file():
        raise TunerError(
            f"--storage-path {root!r} is a file: pass the directory the search's results are in "
            f"(its --storage-path, or its experiment directory)."
        )
    parent, name = whole.rsplit("/", 1)
    here = experiment_dir(f"{parent or '/'}{question}{query}", name)
    for candidate in ([experiment_dir(root, experiment)] if experiment is not None else []) + [
        here
    ]:
        if candidate.read_text(STATE_FILE) is not None:
            return candidate
    if experiment is not None:
        raise TunerError(
            f"--storage-path {mask_uri(root)!r} --experiment {experiment!r}: no tuner search there "
            f"(no {STATE_FILE}). Pass the --storage-path and --experiment the search ran with."
        )
    found = [
        experiment_dir(f"{whole}{question}{query}", i.base_name)
        for i in here.entries()
        if i.type == pafs.FileType.Directory
    ]
    found = [d for d in found if d.read_text(STATE_FILE) is not None]
    if len(found) != 1:
        names = ", ".join(sorted(d.name for d in found)) or "none"
        raise TunerError(
            f"--storage-path {mask_uri(root)!r}: {'several' if found else 'no'} tuner searches "
            f"there ({names}). Pass --experiment NAME, or the search's own directory as "
            "--storage-path."
        )
    return found[0]


def sync_trial(
    tracker: SearchTracker,
    exp_dir: ExperimentDir,
    record: StoredTrial,
    params: Mapping[str, Any],
    status: str,
    plots: str | None,
    name: str | None = None,
) -> None:
    """The trial's run, params, metric history, plots, error and status: whichever are missing."""
    tracker.trial_started(record.trial_id, params, reopen=False, run_name=name)
    for result in record.results:
        tracker.log_metrics(record.trial_id, result, step=int(result.get("iteration", 0)))
    with tempfile.TemporaryDirectory() as tmp:
        if plots is not None:
            download_dir(exp_dir.fs, plots, Path(tmp))
        if status == "FAILED" and record.error:
            (Path(tmp) / "error.txt").write_text(error_summary(record.error))
        if tracker.run_status(record.trial_id) != status or tracker.missing_artifacts(
            record.trial_id, Path(tmp)
        ):
            tracker.trial_finished(record.trial_id, status, Path(tmp))


def _sync_trials(
    tracker: SearchTracker,
    exp_dir: ExperimentDir,
    resolved: dict[str, Any],
    kept_plots: dict[str, str],
) -> list[TrialOutcome]:
    """Every trial that ran, synced; returns their outcomes."""
    outcomes = []
    for record in read_trials(exp_dir):
        trial = trial_record(
            resolved.get("fixed", {}), resolved.get("params", {}), record.trial_id, record.config
        )
        status = record_status(record, trial.config.iterations)
        if status is not None:
            sync_trial(
                tracker,
                exp_dir,
                record,
                trial.params,
                status,
                record.plots or kept_plots.get(record.trial_id),
                trial.run_name,
            )
            outcomes.append(
                TrialOutcome(
                    record.trial_id,
                    status,
                    trial.params,
                    record.results[-1] if record.results else {},
                )
            )
    return outcomes


def sync_search(
    storage_path: str | Path | None = None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    verbose: bool = True,
) -> Counter:
    """Write what MLflow lacks of one search; returns what was written (empty: it was complete)."""
    uri = resolve_tracking_uri(tracking_uri)
    exp_dir = find_experiment_dir(storage_path, experiment)
    check_private(exp_dir)  # Tune's files there are read next
    state = read_state(exp_dir)
    search_id, resolved = str(state["search_id"]), state["spec"]
    found = find_search(connect(uri), search_id)
    name = experiment or (found[0].name if found else resolved.get("name", exp_dir.name))
    params = {
        k: resolved[k] for k in ("metric", "mode", "search", "samples", "n_trials") if k in resolved
    }
    tracker = SearchTracker.open(
        uri,
        name,
        search_id,
        "# rebuilt by tuner sync from the resolved spec\n"
        + yaml.safe_dump(resolved, sort_keys=False),
        resolved,
        {**params, "storage": mask_uri(exp_dir.uri)},
        resume=True,
        reopen=False,
    )
    # tracker.storage stays None: the spool is what this reads
    kept_status, kept_plots = read_spool(exp_dir)
    metric, mode = resolved.get("metric", ["knn_accuracy"]), resolved.get("mode", ["max"])
    try:
        hold_point("sync")
        outcomes = _sync_trials(tracker, exp_dir, resolved, kept_plots)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM mid-sync
        tracker.end_running("KILLED")
        raise
    table = results_table(outcomes, list(resolved.get("params", {})), metric, mode)
    status = kept_status or search_status(
        [o.status for o in outcomes],
        resolved.get("n_trials", 0),
        scheduled=bool(resolved.get("scheduler")),
    )
    # else the parent is as the search left it
    if +tracker.written or tracker.parent_status == "RUNNING":
        tracker.finish(table, metric, mode, status)
    if tracker.offline:
        raise TunerError(
            f"MLflow at {mask_uri(uri)} stopped answering during the sync: run it again once it "
            "answers."
        )
    if kept_status is not None or kept_plots:  # all in MLflow now; a later search may spool afresh
        exp_dir.fs.delete_dir(exp_dir.child(SPOOL_DIR))
    if verbose:
        done = (
            ", ".join(f"{n} {k}" for k, n in sorted((+tracker.written).items()))
            or "nothing was missing"
        )
        print(
            f"synced search {search_id} ({len(table)} trials, {tracker.parent_status.lower()}) "
            f"from {mask_uri(exp_dir.uri)} into MLflow experiment {name!r} at {mask_uri(uri)}: "
            f"{done}"
        )
    return +tracker.written
