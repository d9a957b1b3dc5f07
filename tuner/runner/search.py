"""One search, start to end: `tuner.search(...)` and `tuner search` land here.

The data is featurized once here, on the driver, and reaches trials through Ray's object
store. MLflow is written only from this process, by `TrackingCallback` via SearchTracker.
Joining a cluster (`address`) works the same; the storage path must then be shared.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import ray

from tuner.data import load_features
from tuner.data.features import FeatureSet
from tuner.errors import TunerError
from tuner.outcome import TrialOutcome, results_table, search_status
from tuner.runner.callback import SESSIONS, Session, row_status
from tuner.runner.console import SearchProgress, tune_output_to_log
from tuner.runner.final_test import test_selected_safely
from tuner.runner.models_step import log_search_models
from tuner.runner.ray_cluster import check_cluster, start_ray
from tuner.runner.resume import init_storage, previous_search_id
from tuner.runner.summary import baselines, print_summary
from tuner.runner.tune_setup import make_tuner
from tuner.space.load import load_spec
from tuner.space.spec import SearchSpec
from tuner.storage import ExperimentDir, experiment_dir
from tuner.tracking.store import connect, mask_uri, resolve_tracking_uri
from tuner.tracking.sync import sync_search
from tuner.tracking.writer import SearchTracker


def search(spec_or_path: SearchSpec | str | Path, *, samples: int | None = None,
           max_concurrent: int | None = None, **kwargs: Any) -> pd.DataFrame:
    """Python API: `tuner.search("search_spaces/grid.yaml", iterations=200, tracking_uri=...)`.

    Keywords of `run_search` pass through; any other keyword fixes a trial setting (like --set).
    """
    run_keys = {"tracking_uri", "storage_path", "address", "experiment", "resume", "data_dir", "verbose",
                "tune_console"}
    overrides = {k: v for k, v in kwargs.items() if k not in run_keys}
    if isinstance(spec_or_path, SearchSpec):
        if overrides or samples or max_concurrent:
            raise TunerError("search(): settings can be overridden only when given a file path; "
                             "use load_spec(path, overrides, samples, max_concurrent) instead.")
        spec = spec_or_path
    else:
        spec = load_spec(spec_or_path, overrides, samples, max_concurrent)
    return run_search(spec, **{k: v for k, v in kwargs.items() if k in run_keys})


def run_search(spec: SearchSpec, *, tracking_uri: str | None = None, storage_path: str | Path | None = None,
               address: str | None = None, experiment: str | None = None, resume: bool = False,
               data_dir: str | Path | None = None, verbose: bool = True, tune_console: bool = False) -> pd.DataFrame:
    """Run (or with `resume`, continue) a search; return one row per trial, best first.

    `address` (or $RAY_ADDRESS) joins a running Ray cluster; `storage_path` is a local directory,
    a directory every node mounts, or a pyarrow URI such as s3://bucket/prefix. `verbose` False
    prints nothing; else a live progress line, or with `tune_console` Tune's own output.
    """
    started = time.perf_counter()
    experiment = experiment or spec.name
    uri = resolve_tracking_uri(tracking_uri)
    exp_dir = experiment_dir(storage_path, experiment)
    search_id = previous_search_id(exp_dir, spec) if resume else f"{experiment}-{uuid.uuid4().hex[:8]}"
    connect(uri)  # an unusable tracking URI fails here, before Ray, data or any run
    if resume:  # what an unreachable tracking server missed goes in first; the resumed runs continue it
        sync_search(exp_dir.uri, experiment, uri, verbose=verbose)
    own_ray = start_ray(address, verbose)
    try:
        check_cluster(spec, storage_path, verbose)
        data = load_features(spec.base_config, data_dir=data_dir, progress=verbose)
        tracker = SearchTracker.open(uri, experiment, search_id, spec.text, spec.resolved(),
                                     search_params(spec, exp_dir), resume, storage=exp_dir)
        if not resume:
            init_storage(exp_dir, search_id, spec, verbose)
            tracker.log_baselines(baselines(spec, data))
        console = "quiet" if not verbose else "tune" if tune_console else "progress"
        table, status = fit_tracked(spec, data, tracker, exp_dir, search_id, resume, console, data_dir)
    finally:
        if own_ray:
            ray.shutdown()
    if verbose:
        print_summary(spec, table, experiment, uri, exp_dir.uri, time.perf_counter() - started, status)
    return table


def fit_tracked(spec: SearchSpec, data: FeatureSet, tracker: SearchTracker, exp_dir: ExperimentDir,
                search_id: str, resume: bool, console: str,
                data_dir: str | Path | None = None) -> tuple[pd.DataFrame, str]:
    """Tuner.fit with the callback's session live; the parent run ends whatever happens.

    `console`: quiet, progress (a live line; Tune's output to its log file) or tune (Tune's output).
    """
    progress = SearchProgress(spec) if console == "progress" else None
    session = SESSIONS[search_id] = Session(tracker, spec, progress=progress)
    table, status = pd.DataFrame(), "FAILED"
    try:
        tuner = make_tuner(spec, data, exp_dir, search_id, resume, tune_verbosity=0 if console == "quiet" else 2)
        with tune_output_to_log(exp_dir) if progress else contextlib.nullcontext():
            try:
                tuner.fit()
            finally:
                if progress:
                    progress.close()
        for trial_id in sorted(session.open_trials):  # interrupted (Ctrl-C): resumable
            tracker.trial_finished(trial_id, "KILLED")
        outcomes = [TrialOutcome(t.trial_id, row_status(spec, session, t), spec.trial_config(t.config).to_dict(),
                                 t.last_result) for t in session.trials]
        seeds = ["seed"] if spec.repeats > 1 and "seed" not in spec.params else []  # which run of a configuration
        table = results_table(outcomes, [*spec.params, *seeds], spec.metric, spec.mode)
        status = search_status(list(table["status"]), spec.n_trials, scheduled=spec.scheduler is not None)
        if status == "FINISHED":  # the selected trials read once on the test split; their models logged
            table = test_selected_safely(spec, table, session.trials, tracker, data)
            log_search_models(spec, table, session.trials, tracker, data, data_dir, verbose=console != "quiet")
    finally:
        tracker.finish(table, list(spec.metric), list(spec.mode), status)
        SESSIONS.pop(search_id, None)
    return table, status


def search_params(spec: SearchSpec, exp_dir: ExperimentDir) -> dict[str, Any]:
    r = spec.resolved()
    return {"space_file": str(spec.path), "search": spec.search, "samples": spec.samples,
            "n_trials": spec.n_trials, "repeats": spec.repeats, "metric": list(spec.metric), "mode": list(spec.mode),
            "scheduler": r["scheduler"] or "none", "max_concurrent": spec.max_concurrent or "unlimited",
            "cpus_per_trial": spec.cpus, "gpus_per_trial": spec.gpus, "searcher_seed": spec.seed,
            "checkpoint_every": spec.checkpoint_every, "max_failures": spec.max_failures,
            "storage": mask_uri(exp_dir.uri), **{f"searched.{k}": v for k, v in r["params"].items()}}


