"""Assemble and run one search on Ray Tune: searcher, scheduler, resources, storage, resume.

The data is featurized once here, on the driver, and reaches trials through Ray's object
store. MLflow is written only from this process, by `TrackingCallback` via SearchTracker.
Joining a cluster (`address`) works the same; the storage path must then be shared.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune

from tuner.data import load_features
from tuner.data.features import FeatureSet
from tuner.errors import TunerError
from tuner.runner.callback import SESSIONS, Session, TrackingCallback, row_status
from tuner.runner.summary import TrialOutcome, baselines, print_summary, results_table
from tuner.space.load import SearchSpec, load_spec
from tuner.storage import STATE_FILE, STORAGE_HINT, ExperimentStore, experiment_store
from tuner.tracking.writer import SearchTracker, connect, mask_uri, resolve_tracking_uri
from tuner.runner.trial import run_trial
from tuner.runner.models_step import log_search_models



def search(spec_or_path: SearchSpec | str | Path, *, samples: int | None = None,
           max_concurrent: int | None = None, **kwargs: Any) -> pd.DataFrame:
    """Python API: `tuner.runner.search("search_spaces/grid.yaml", iterations=200, tracking_uri=...)`.

    Keywords of `run_search` pass through; any other keyword fixes a trial setting (like --set).
    """
    run_keys = {"tracking_uri", "storage_path", "address", "experiment", "resume", "data_dir", "verbose"}
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
               data_dir: str | Path | None = None, verbose: bool = True) -> pd.DataFrame:
    """Run (or with `resume`, continue) a search; return one row per trial, best first.

    `address` (or $RAY_ADDRESS) joins a running Ray cluster; `storage_path` is a local directory,
    a directory every node mounts, or a pyarrow URI such as s3://bucket/prefix.
    """
    started = time.perf_counter()
    experiment = experiment or spec.name
    uri = resolve_tracking_uri(tracking_uri)
    store = experiment_store(storage_path, experiment)
    search_id = previous_search_id(store, spec) if resume else f"{experiment}-{uuid.uuid4().hex[:8]}"
    connect(uri)  # an unusable tracking URI fails here, before Ray, data or any run
    if resume:  # what an unreachable tracking server missed goes in first; the resumed runs continue it
        from tuner.tracking.sync import sync_search

        sync_search(store.uri, experiment, uri, verbose=verbose)
    own_ray = start_ray(address, verbose)
    try:
        check_cluster(spec, storage_path, verbose)
        data = load_features(spec.base_config, data_dir=data_dir, progress=verbose)
        tracker = SearchTracker.open(uri, experiment, search_id, spec.text, spec.resolved(),
                                     search_params(spec, store), resume)
        if not resume:
            init_storage(store, search_id, spec, verbose)
            tracker.log_baselines(baselines(spec, data))
        table, status = fit_tracked(spec, data, tracker, store, search_id, resume, verbose, data_dir=data_dir)
    finally:
        if own_ray:
            ray.shutdown()
    if verbose:
        print_summary(spec, table, experiment, uri, store.uri, time.perf_counter() - started, status)
    return table


def fit_tracked(spec: SearchSpec, data: FeatureSet, tracker: SearchTracker, store: ExperimentStore,
                search_id: str, resume: bool, verbose: bool,
                data_dir: str | Path | None = None) -> tuple[pd.DataFrame, str]:
    """Tuner.fit with the callback's session live; the parent run ends whatever happens."""
    session = SESSIONS[search_id] = Session(tracker, spec)
    table, status = pd.DataFrame(), "FAILED"
    try:
        make_tuner(spec, data, store, search_id, resume, verbose).fit()
        for trial_id in sorted(session.open_trials):  # interrupted (Ctrl-C): resumable
            tracker.trial_finished(trial_id, "KILLED")
        table = results_table(spec, [TrialOutcome(t.trial_id, row_status(spec, session, t), t.config,
                                                  t.last_result) for t in session.trials])
        status = "KILLED" if (table["status"] == "UNFINISHED").any() else "FINISHED"
        if status == "FINISHED":  # hook (issue 9): the chosen trials' models, logged and registered
            log_search_models(spec, table, session.trials, tracker, data, data_dir, verbose)
    finally:
        tracker.finish(table, list(spec.metric), list(spec.mode), status)
        SESSIONS.pop(search_id, None)
    return table, status


def previous_search_id(store: ExperimentStore, spec: SearchSpec) -> str:
    """The id of the search to resume; its settings must match the current ones."""
    text = store.read_text(STATE_FILE)
    if text is None or not tune.Tuner.can_restore(store.uri):
        raise TunerError(f"--resume: no search to resume in {mask_uri(store.uri)}. Pass the --storage-path "
                         f"and --experiment it ran with, or start it without --resume.")
    saved = json.loads(text)
    now = json.loads(json.dumps(spec.resolved()))
    changed = sorted(k for k in now if saved["spec"].get(k) != now[k])
    if changed:
        raise TunerError(f"--resume: the search in {mask_uri(store.uri)} ran with other settings "
                         f"({', '.join(changed)} differ). Resume with the same file, --set, --samples and "
                         f"--max-concurrent, or start a new search without --resume.")
    return str(saved["search_id"])


def init_storage(store: ExperimentStore, search_id: str, spec: SearchSpec, verbose: bool) -> None:
    """A fresh experiment directory; an earlier search's is moved aside, not deleted."""
    if store.entries():
        moved = store.move_aside()
        if verbose:
            print(f"moved the previous search's Tune results to {mask_uri(moved)}")
    store.write_text(STATE_FILE, json.dumps({"search_id": search_id, "spec": spec.resolved()}, indent=2))


def search_params(spec: SearchSpec, store: ExperimentStore) -> dict[str, Any]:
    r = spec.resolved()
    return {"space_file": str(spec.path), "search": spec.search, "samples": spec.samples,
            "n_trials": spec.n_trials, "metric": list(spec.metric), "mode": list(spec.mode),
            "scheduler": r["scheduler"] or "none", "max_concurrent": spec.max_concurrent or "unlimited",
            "cpus_per_trial": spec.cpus, "gpus_per_trial": spec.gpus, "searcher_seed": spec.seed,
            "checkpoint_every": spec.checkpoint_every, "max_failures": spec.max_failures,
            "storage": mask_uri(store.uri), **{f"searched.{k}": v for k, v in r["params"].items()}}


def start_ray(address: str | None, verbose: bool) -> bool:
    """A local Ray sized to this machine, or the given cluster; True when we started it."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    try:
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=verbose)
        else:  # no dashboard: nothing listens beyond what Ray itself needs
            # address="local": a new Ray of our own, never someone's `ray start` on this machine.
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING",
                     log_to_driver=verbose)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as err:
        raise TunerError(f"cannot start or join Ray at {address or 'a local instance'!r}: {err}. Check "
                         f"`ray status`; with token auth, export RAY_AUTH_MODE=token for every ray "
                         f"command and driver.") from None
    return True


def check_cluster(spec: SearchSpec, storage_path: str | Path | None, verbose: bool) -> None:
    """Refuse what could never work, before any run exists: no shared storage across nodes,
    a trial larger than every node (it would wait forever)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and storage_path is None:
        raise TunerError(f"the Ray cluster has {len(nodes)} nodes, and trials on one node must read the "
                         f"checkpoints and results written on another: pass --storage-path with {STORAGE_HINT}.")
    for key, need, name in (("CPU", spec.cpus, "cpus"), ("GPU", spec.gpus, "gpus")):
        have = max((n.get("Resources", {}).get(key, 0) for n in nodes), default=0)
        if need > have:
            where = "the Ray cluster has" if len(nodes) == 1 else "the largest node of the Ray cluster has"
            raise TunerError(f"{spec.path}: resources.{name}: each trial asks for {need:g} {key}, {where} "
                             f"{have:g}. Lower it, or join a larger cluster (--address).")
    if len(nodes) > 1 and spec.max_failures == 0 and verbose:
        print("note: max_failures is 0, so a node lost mid-search fails the trials on it; with "
              "max_failures >= 1 they resume from their last checkpoint on another node.")


def make_tuner(spec: SearchSpec, data: FeatureSet, store: ExperimentStore, search_id: str, resume: bool,
               verbose: bool) -> tune.Tuner:
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, data=data, fixed=spec.fixed, cpus=spec.cpus,
                             checkpoint_every=spec.checkpoint_every),
        {"cpu": spec.cpus, "gpu": spec.gpus})
    # Tune's saved state names the checkpoints a resume starts from; by default it is written
    # every 10+ s, so a crash would replay that much of every running trial.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "3")
    # Tune warns about every trial that has not started (no results to load): noise here.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    if resume:  # finished trials stay; the rest continue from checkpoints; Optuna's state returns
        return tune.Tuner.restore(store.uri, trainable=trainable, resume_errored=True,
                                  param_space=spec.param_space())
    single = not spec.multi_objective
    run_config = tune.RunConfig(
        name=store.name, storage_path=store.parent_uri, callbacks=[TrackingCallback(search_id)],
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # No num_to_keep: Tune deletes old checkpoints before its saved state stops naming them,
        # and a crash in between fails the trial on resume. Ended trials' checkpoints go instead.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None), verbose=1 if verbose else 0)
    tune_config = tune.TuneConfig(
        metric=spec.metric[0] if single else None, mode=spec.mode[0] if single else None,
        search_alg=_searcher(spec), scheduler=_scheduler(spec), num_samples=spec.samples,
        max_concurrent_trials=spec.max_concurrent if spec.search == "optuna" else None,
        reuse_actors=True)  # a new worker costs ~1.3 s (it imports torch); reuse saves most of it
    return tune.Tuner(trainable, param_space=spec.param_space(), tune_config=tune_config, run_config=run_config)


def _searcher(spec: SearchSpec) -> Any:
    if spec.search != "optuna":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(random_state=spec.seed, max_concurrent=spec.max_concurrent or 0)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sampler = optuna.samplers.TPESampler(seed=spec.seed)
    if spec.multi_objective:  # Tune's own metric stays unset: it takes one metric only
        return OptunaSearch(metric=list(spec.metric), mode=list(spec.mode), sampler=sampler)
    return OptunaSearch(sampler=sampler)


def _scheduler(spec: SearchSpec) -> Any:
    if spec.scheduler is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    s = spec.scheduler
    return ASHAScheduler(time_attr="iteration", max_t=s.max_t, grace_period=s.grace_period,
                         reduction_factor=s.reduction_factor, brackets=s.brackets)
