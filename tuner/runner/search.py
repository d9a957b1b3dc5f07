"""One search, start to end: `tuner.search(...)` and `tuner search` land here.

The data is featurized once here, on the driver, and reaches trials through Ray's object
store. MLflow is written only from this process, by `TrackingCallback` via SearchTracker.
Joining a cluster (`address`) works the same; the storage path must then be shared.
"""

from __future__ import annotations

import contextlib
import errno
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.core.importance import param_importances
from tuner.core.selection import require_text, results_table, search_status
from tuner.data import load_features
from tuner.data.features import FeatureSet
from tuner.errors import TunerError
from tuner.runner.callback import TrackingCallback
from tuner.runner.console import SearchProgress, TrialLines, tune_output_to_log
from tuner.runner.final_test import test_selected_safely
from tuner.runner.models_step import ModelWarmUp, log_search_models
from tuner.runner.ray_cluster import check_cluster, start_ray, stop_ray
from tuner.runner.result import SearchResult, search_result
from tuner.runner.resume import init_storage, previous_search_id
from tuner.runner.setup_clock import SetupClock
from tuner.runner.summary import baselines, print_summary
from tuner.runner.trials import TrialLedger
from tuner.runner.tune_setup import make_tuner
from tuner.space.load import load_spec
from tuner.space.spec import SearchSpec, TrialRecord
from tuner.system.disk import full_filesystems, is_disk_full
from tuner.system.processes import hold_point, interrupt_handler_kept
from tuner.system.secrets import mask_uri
from tuner.system.storage_guard import check_private, refuse_if_locked, search_lock
from tuner.system.tune_storage import ExperimentDir, experiment_dir
from tuner.tracking.inputs import describe
from tuner.tracking.readback import read_search_runs
from tuner.tracking.store import connect, resolve_tracking_uri
from tuner.tracking.sync import sync_search
from tuner.tracking.ui_view import view_metrics
from tuner.tracking.warm_start import WarmStart, read_warm_start
from tuner.tracking.writer import SearchTracker

# What a search's Tune run leaves: the results table, the search's status, each trial's record.
Concluded = tuple[pd.DataFrame, str, Mapping[str, TrialRecord]]


def search(
    spec_or_path: SearchSpec | str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    samples: int | None = None,
    max_concurrent: int | None = None,
    tracking_uri: str | None = None,
    storage_path: str | Path | None = None,
    address: str | None = None,
    experiment: str | None = None,
    resume: bool = False,
    data_dir: str | Path | None = None,
    verbose: bool = True,
    tune_console: bool = False,
    warm_start: str | None = None,
) -> SearchResult:
    """Python API: `tuner.search("search_spaces/grid.yaml", overrides={"iterations": 200})`.

    `overrides`, `samples` and `max_concurrent` are the CLI's --set, --samples and
    --max-concurrent (a file path only: a SearchSpec from `tuner.load_spec` has them already);
    the other keywords are `run_search`'s.
    """
    if overrides is not None and not isinstance(overrides, Mapping):
        raise TunerError(
            f"search(): overrides={overrides!r} is not valid: expected a mapping of "
            f"trial settings to values, such as {{'iterations': 100}}."
        )
    if isinstance(spec_or_path, SearchSpec):
        if overrides or samples is not None or max_concurrent is not None:
            raise TunerError(
                "search(): overrides, samples and max_concurrent apply to a file path "
                "only; with a SearchSpec pass them to tuner.load_spec(path, "
                "overrides=..., samples=..., max_concurrent=...) instead."
            )
        spec = spec_or_path
    else:
        spec = load_spec(spec_or_path, dict(overrides or {}), samples, max_concurrent)
    return run_search(
        spec,
        tracking_uri=tracking_uri,
        storage_path=storage_path,
        address=address,
        experiment=experiment,
        resume=resume,
        data_dir=data_dir,
        verbose=verbose,
        tune_console=tune_console,
        warm_start=warm_start,
    )


@dataclass(frozen=True)
class SearchRun:
    """One search's where and how, decided before Ray starts and passed down as one value."""

    spec: SearchSpec
    experiment: str
    tracking_uri: str
    exp_dir: ExperimentDir
    search_id: str
    resume: bool
    console: (
        str  # quiet | progress (a live line; Tune's output to its log file) | tune (Tune's output)
    )
    data_dir: str | Path | None
    warm: WarmStart | None
    clock: SetupClock


def run_search(
    spec: SearchSpec,
    *,
    tracking_uri: str | None = None,
    storage_path: str | Path | None = None,
    address: str | None = None,
    experiment: str | None = None,
    resume: bool = False,
    data_dir: str | Path | None = None,
    verbose: bool = True,
    tune_console: bool = False,
    warm_start: str | None = None,
) -> SearchResult:
    """Run (or with `resume`, continue) a search; return its trials (one row each, best first),
    the trial it chose, its front and its registered model (`runner.result`).

    `address` (or $RAY_ADDRESS) joins a running Ray cluster; `storage_path` is a local directory,
    a directory every node mounts, or a pyarrow URI such as s3://bucket/prefix. `verbose` False
    prints nothing; else a live progress line, or with `tune_console` Tune's own output.
    `warm_start` (an experiment, search id or parent run id) tells Optuna an earlier search's
    trials.
    """
    started, clock = time.perf_counter(), SetupClock()
    # an empty name is refused, not replaced
    experiment = spec.name if experiment is None else experiment
    uri = resolve_tracking_uri(tracking_uri)
    # also takes credentials out of a storage URI
    exp_dir = experiment_dir(storage_path, experiment)
    check_private(exp_dir)
    refuse_if_locked(exp_dir)  # a second search: refused now, before Ray and MLflow start
    search_id = (
        previous_search_id(exp_dir, spec) if resume else f"{experiment}-{uuid.uuid4().hex[:8]}"
    )
    console = "quiet" if not verbose else "tune" if tune_console else "progress"
    run = SearchRun(
        spec,
        experiment,
        uri,
        exp_dir,
        search_id,
        resume,
        console,
        data_dir,
        warm_start_from(spec, warm_start, uri, resume, verbose),
        clock,
    )
    # Opening the MLflow store (creating it, on a first search) is seconds of CPU; starting Ray is
    # seconds of waiting: side by side. An unusable tracking URI fails once Ray is up, before
    # any lock, data, storage or run.
    with ThreadPoolExecutor(1, thread_name_prefix="tuner-connect") as pool:
        table, status, records = _run_on_ray(run, address, storage_path, pool.submit(connect, uri))
    if verbose:
        print_summary(
            spec, table, experiment, uri, exp_dir.uri, time.perf_counter() - started, status
        )
    return search_result(
        spec,
        table,
        records,
        status,
        experiment,
        search_id,
        exp_dir.uri,
        read_search_runs(uri, experiment, search_id),
    )


def _run_on_ray(
    run: SearchRun, address: str | None, storage_path: str | Path | None, connecting: Future
) -> Concluded:
    verbose, clock = run.console != "quiet", run.clock
    clock.lap("mlflow")
    own_ray = start_ray(address, verbose)
    try:
        hold_point("setup")
        clock.lap("ray start")
        connecting.result()
        # a second search of this experiment stops here
        with search_lock(run.exp_dir, run.search_id):
            # what an unreachable tracking server missed goes in first; the resumed runs continue it
            if run.resume:
                sync_search(run.exp_dir.uri, run.experiment, run.tracking_uri, verbose=verbose)
            clock.lap("mlflow")
            check_cluster(run.spec, storage_path, verbose)
            clock.lap("ray start")
            hold_point("data")
            data = load_features(run.spec.base_config, data_dir=run.data_dir, progress=verbose)
            run.spec.check_data(data)
            clock.lap("data")
            # storage ready before the parent run exists: a failure here leaves no run
            if not run.resume:
                init_storage(run.exp_dir, run.search_id, run.spec, verbose)
            tracker = SearchTracker.open(
                run.tracking_uri,
                run.experiment,
                run.search_id,
                run.spec.text,
                run.spec.resolved(),
                search_params(run.spec, run.exp_dir, run.warm),
                run.resume,
                storage=run.exp_dir,
            )
            clock.lap("mlflow")
            return fit_tracked(run, data, tracker)
    finally:
        if own_ray:
            stop_ray()


def fit_tracked(run: SearchRun, data: FeatureSet, tracker: SearchTracker) -> Concluded:
    """Tuner.fit with the search's callback and its parts; the parent run ends whatever happens
    (from here on: nothing that can fail runs between opening the tracker and this). Returns the
    results table, the search's status and the ledger's trial records."""
    spec = run.spec
    progress = SearchProgress(spec) if run.console == "progress" else None
    lines = TrialLines(progress, clock=run.clock if run.console != "quiet" else None)
    callback = TrackingCallback(run.search_id, tracker, TrialLedger(spec), lines, ModelWarmUp(spec))
    table, status = pd.DataFrame(), "FAILED"
    try:
        cfg = spec.base_config
        tracker.set_data(describe(f"{cfg.dataset}/{cfg.feature_extractor}", data))
        if not run.resume:
            tracker.log_baselines(baselines(spec, data))
            run.clock.lap("baselines")
        tuner = make_tuner(
            spec,
            data,
            run.exp_dir,
            callback,
            run.resume,
            tune_verbosity=0 if run.console == "quiet" else 2,
            warm=run.warm,
        )
        with (
            tune_output_to_log(run.exp_dir) if progress else contextlib.nullcontext(),
            interrupt_handler_kept(),
        ):
            try:
                tuner.fit()
            finally:
                if progress:
                    progress.close()
        # Tune stopped (callback.py) and saved its state
        if callback.disk_full or tracker.disk_full:
            raise OSError(errno.ENOSPC, "no space left for a trial or the tracking store")
        callback.cleaner.delete()  # Tune's final state is saved: no ended trial resumes
        table, status = _conclude(run, callback, tracker, data)
    # Tune raised (a driver error, a second Ctrl-C): no trial run stays RUNNING
    except BaseException as err:
        _end_interrupted(callback.ledger, tracker)
        if isinstance(err, KeyboardInterrupt) or is_disk_full(err):  # --resume continues
            status = "KILLED"
        if is_disk_full(err):
            raise TunerError(_disk_full_message(run, tracker)) from None
        raise
    finally:
        try:
            tracker.finish(table, list(spec.metric), list(spec.mode), status)
        finally:  # after the runs are closed: a second Ctrl-C here leaves none RUNNING
            callback.warm_up.wait()  # a stopped search too: see ModelWarmUp
    return table, status, callback.ledger.records


def _conclude(
    run: SearchRun, callback: TrackingCallback, tracker: SearchTracker, data: FeatureSet
) -> tuple[pd.DataFrame, str]:
    """The results table and the search's status; a finished search's selected trials are read once
    on the test split and their models logged."""
    spec, ledger = run.spec, callback.ledger
    outcomes = ledger.outcomes()
    _end_interrupted(ledger, tracker)
    # which run of a configuration
    seeds = ["seed"] if spec.repeats > 1 and "seed" not in spec.params else []
    table = results_table(outcomes, [*spec.params, *seeds], spec.metric, spec.mode)
    status = search_status(
        list(table["status"]), spec.n_trials, scheduled=spec.scheduler is not None
    )
    if status == "FINISHED":
        hold_point("final test")
        table = test_selected_safely(spec, table, ledger.trials, ledger.records, tracker, data)
        callback.warm_up.wait()
        hold_point("models")
        log_search_models(
            spec,
            table,
            ledger.trials,
            ledger.records,
            tracker,
            data,
            run.data_dir,
            verbose=run.console != "quiet",
        )
    # Once, here: the tracker logs them on the parent run and the summary prints them.
    table.attrs["importances"] = param_importances(
        table, list(spec.params), view_metrics(spec.metric)
    )
    return table, status


def _disk_full_message(run: SearchRun, tracker: SearchTracker) -> str:
    uri = run.tracking_uri
    store = uri[len("sqlite:///") :].split("?")[0] if uri.startswith("sqlite:////") else None
    storage = None if run.exp_dir.is_uri else run.exp_dir.path
    where = full_filesystems({"Tune's storage path": storage, "the MLflow store": store})
    unclosed = (
        " The MLflow store could not be written: runs it could not close show RUNNING until then."
        if tracker.disk_full
        else ""
    )
    return (
        f"no space left on {where}. The search stopped and Tune kept its state; free space there "
        "(or pass another --storage-path / --tracking-uri), then continue it: the same "
        f"`tuner search` command with --resume.{unclosed}"
    )


def _end_interrupted(ledger: TrialLedger, tracker: SearchTracker) -> None:
    """The runs of trials still open end KILLED: interrupted (Ctrl-C, or Tune stopped),
    resumable."""
    for trial_id in sorted(ledger.open):
        tracker.trial_finished(trial_id, "KILLED")
    ledger.open.clear()


def warm_start_from(
    spec: SearchSpec, warm_start: str | None, uri: str, resume: bool, verbose: bool
) -> WarmStart | None:
    """The earlier search's trials for Optuna. Only Optuna learns from earlier results: Tune's
    grid/random generator has nothing to be told."""
    if not warm_start:
        return None
    if spec.search != "optuna":
        raise TunerError(
            f"--warm-start {warm_start}: {spec.path} is a {spec.search} search, which proposes "
            f"the same trials whatever came before; only `search: optuna` learns from earlier "
            f"trials. To continue an interrupted search, use --resume."
        )
    if resume:
        raise TunerError(
            f"--warm-start {warm_start} with --resume: a resumed search keeps the searcher it "
            f"started with (and any warm start it had); drop --warm-start."
        )
    warm = read_warm_start(uri, warm_start, spec)
    if verbose:
        print(warm.summary(), flush=True)
    return warm


def search_params(
    spec: SearchSpec, exp_dir: ExperimentDir, warm: WarmStart | None = None
) -> dict[str, Any]:
    r = spec.resolved()
    started = (
        {}
        if warm is None
        else {  # the search it started from, and how much of it was used
            "warm_start": warm.source,
            "warm_start_used": warm.used,
            "warm_start_pruned": len(warm.stopped),
            "warm_start_skipped": warm.outside + warm.other_settings,
            "warm_start_unfinished": warm.unfinished,
        }
    )
    return {
        "space_file": str(spec.path),
        "search": spec.search,
        "samples": spec.samples,
        "n_trials": spec.n_trials,
        "repeats": spec.repeats,
        "metric": list(spec.metric),
        "mode": list(spec.mode),
        "scheduler": r["scheduler"] or "none",
        "max_concurrent": spec.max_concurrent or "unlimited",
        "cpus_per_trial": spec.cpus,
        "gpus_per_trial": spec.gpus,
        "searcher_seed": spec.seed,
        "checkpoint_every": spec.checkpoint_every,
        "max_failures": spec.max_failures,
        "storage": mask_uri(exp_dir.uri),
        **({"require": require_text(spec.require)} if spec.require else {}),
        **{f"searched.{k}": v for k, v in r["params"].items()},
        **started,
    }
