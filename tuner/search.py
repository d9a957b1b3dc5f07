"""Assemble and run one search on Ray Tune: searcher, scheduler, resources, storage, resume.

The data is featurized once here, on the driver, and reaches trials through Ray's object
store. MLflow is written only from this process, by `TrackingCallback` via SearchTracker.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time
import types
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
from ray import tune

from tuner.data import load_features
from tuner.data.features import FeatureSet
from tuner.errors import TunerError
from tuner.space import METRIC_MODES, SearchSpec, load_spec
from tuner.tracking import SearchTracker, connect, mask_uri, resolve_tracking_uri
from tuner.trial import run_trial

STATE_FILE = "tuner_search.json"  # search_id + resolved spec, beside Tune's own state
PLOTS_DIR = "trial_plots"
REPORTED = ("iteration", *METRIC_MODES)


@dataclass
class _Session:
    """What the callback needs. Tune pickles callbacks into its state (tuner.pkl), so the
    callback holds only the search id and finds this live session by it."""

    tracker: SearchTracker
    spec: SearchSpec
    plots_root: Path
    open_trials: set[str] = field(default_factory=set)  # started in this run, not ended
    ended: dict[str, str] = field(default_factory=dict)  # trial id -> status, this run
    trials: list = field(default_factory=list)

    def end(self, trial: Any, status: str, error: str | None = None) -> None:
        self.tracker.trial_finished(trial.trial_id, status, self.plots_root / trial.trial_id, error=error)
        self.open_trials.discard(trial.trial_id)
        self.ended[trial.trial_id] = status
        if status != "FAILED":  # resume never restores an ended trial; a failed one it retries
            for checkpoint in Path(trial.path).glob("checkpoint_*"):
                shutil.rmtree(checkpoint, ignore_errors=True)


_SESSIONS: dict[str, _Session] = {}


class TrackingCallback(tune.Callback):
    """Tune events -> SearchTracker: one nested MLflow run per trial, found by trial id."""

    def __init__(self, search_id: str) -> None:
        self.search_id = search_id

    @property
    def session(self) -> _Session:
        return _SESSIONS[self.search_id]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        s = self.session
        s.tracker.trial_started(trial.trial_id, s.spec.trial_config(trial.config).to_dict())
        s.open_trials.add(trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.session.tracker.log_metrics(trial.trial_id, result, step=int(result.get("iteration", 0)))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id not in self.session.open_trials and "iteration" not in trial.last_result:
            return  # a pending trial dropped at Ctrl-C: it never ran, so it gets no run
        self.session.end(trial, _ended_status(self.session.spec, trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.session.end(trial, "FAILED", error=_error_text(trial))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.session.trials = list(trials)


def _error_text(trial: Any) -> str:
    """The trial's traceback; at this point it sits in the driver's staging copy, not yet in storage."""
    local = trial.error_file
    text = Path(local).read_text() if local and Path(local).is_file() else str(trial.get_error() or "")
    lines = [line for line in text.splitlines() if line.strip()]
    summary = lines[-1] if lines else f"trial {trial.trial_id} failed (see {trial.path})"
    return f"{summary}\n\n{text}" if text else summary  # the exception first, then the traceback


def _ended_status(spec: SearchSpec, trial: Any) -> str:
    """FINISHED when the trial reached its last iteration, else KILLED (stopped by ASHA)."""
    last = trial.last_result.get("iteration", 0)
    return "FINISHED" if last >= spec.trial_config(trial.config).iterations else "KILLED"


# ------------------------------------------------------------------ the search


def search(spec_or_path: SearchSpec | str | Path, *, samples: int | None = None,
           max_concurrent: int | None = None, **kwargs: Any) -> pd.DataFrame:
    """Python API: `tuner.search("search_spaces/grid.yaml", iterations=200, tracking_uri=...)`.

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
    """Run (or with `resume`, continue) a search; return one row per trial, best first."""
    started = time.perf_counter()
    experiment = experiment or spec.name
    uri = resolve_tracking_uri(tracking_uri)
    exp_dir = experiment_dir(storage_path, experiment)
    search_id = previous_search_id(exp_dir, spec) if resume else f"{experiment}-{uuid.uuid4().hex[:8]}"
    connect(uri)  # an unusable tracking URI fails here, before data, Ray or any run
    data = load_features(spec.base_config, data_dir=data_dir, progress=verbose)
    own_ray = start_ray(address, verbose)
    try:
        check_resources(spec)
        tracker = SearchTracker.open(uri, experiment, search_id, spec.text, spec.resolved(),
                                     search_params(spec, exp_dir), resume)
        if not resume:
            init_storage(exp_dir, search_id, spec, verbose)
            tracker.log_baselines(baselines(spec, data))
        table, status = fit_tracked(spec, data, tracker, exp_dir, search_id, resume, verbose)
    finally:
        if own_ray:
            ray.shutdown()
    if verbose:
        print_summary(spec, table, experiment, uri, exp_dir, time.perf_counter() - started, status)
    return table


def fit_tracked(spec: SearchSpec, data: FeatureSet, tracker: SearchTracker, exp_dir: Path, search_id: str,
                resume: bool, verbose: bool) -> tuple[pd.DataFrame, str]:
    """Tuner.fit with the callback's session live; the parent run ends whatever happens."""
    session = _SESSIONS[search_id] = _Session(tracker, spec, exp_dir / PLOTS_DIR)
    table, status = pd.DataFrame(), "FAILED"
    try:
        make_tuner(spec, data, exp_dir, search_id, resume, verbose).fit()
        for trial_id in sorted(session.open_trials):  # interrupted (Ctrl-C): resumable
            tracker.trial_finished(trial_id, "KILLED")
        table = results_table(spec, session)
        status = "KILLED" if (table["status"] == "UNFINISHED").any() else "FINISHED"
    finally:
        tracker.finish(table, list(spec.metric), list(spec.mode), status)
        _SESSIONS.pop(search_id, None)
    return table, status


def experiment_dir(storage_path: str | Path | None, experiment: str) -> Path:
    root = str(storage_path or "ray_results")
    if "://" in root:
        raise TunerError(f"--storage-path {root!r}: expected a directory (on a multi-node cluster, one "
                         f"every node mounts), not a URI.")
    return Path(root).expanduser().resolve() / re.sub(r"[^\w.-]", "_", experiment)


def previous_search_id(exp_dir: Path, spec: SearchSpec) -> str:
    """The id of the search to resume; its settings must match the current ones."""
    state = exp_dir / STATE_FILE
    if not state.is_file() or not tune.Tuner.can_restore(str(exp_dir)):
        raise TunerError(f"--resume: no search to resume in {exp_dir}. Pass the --storage-path and "
                         f"--experiment it ran with, or start it without --resume.")
    saved = json.loads(state.read_text())
    now = json.loads(json.dumps(spec.resolved()))
    changed = sorted(k for k in now if saved["spec"].get(k) != now[k])
    if changed:
        raise TunerError(f"--resume: the search in {exp_dir} ran with other settings ({', '.join(changed)} "
                         f"differ). Resume with the same file, --set, --samples and --max-concurrent, or "
                         f"start a new search without --resume.")
    return str(saved["search_id"])


def init_storage(exp_dir: Path, search_id: str, spec: SearchSpec, verbose: bool) -> None:
    """A fresh experiment directory; an earlier search's is moved aside, not deleted."""
    if exp_dir.exists() and any(exp_dir.iterdir()):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(exp_dir.stat().st_mtime))
        moved = exp_dir.with_name(f"{exp_dir.name}-{stamp}")
        exp_dir.rename(moved)
        if verbose:
            print(f"moved the previous search's Tune results to {moved}")
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / STATE_FILE).write_text(json.dumps({"search_id": search_id, "spec": spec.resolved()}, indent=2))


def search_params(spec: SearchSpec, exp_dir: Path) -> dict[str, Any]:
    r = spec.resolved()
    return {"space_file": str(spec.path), "search": spec.search, "samples": spec.samples,
            "n_trials": spec.n_trials, "metric": list(spec.metric), "mode": list(spec.mode),
            "scheduler": r["scheduler"] or "none", "max_concurrent": spec.max_concurrent or "unlimited",
            "cpus_per_trial": spec.cpus, "gpus_per_trial": spec.gpus, "searcher_seed": spec.seed,
            "checkpoint_every": spec.checkpoint_every, "max_failures": spec.max_failures,
            "storage": str(exp_dir), **{f"searched.{k}": v for k, v in r["params"].items()}}


def start_ray(address: str | None, verbose: bool) -> bool:
    """A local Ray sized to this machine, or the given cluster; True when we started it."""
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=verbose)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING",
                     log_to_driver=verbose)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise TunerError(f"cannot start or join Ray at {address or 'a local instance'!r}: {err}. Check "
                         f"`ray status`; with token auth, export RAY_AUTH_MODE=token for every ray "
                         f"command and driver.") from None
    return True


def check_resources(spec: SearchSpec) -> None:
    """A trial larger than the whole cluster would wait forever: refuse it now."""
    have = ray.cluster_resources()
    for key, need, name in (("CPU", spec.cpus, "cpus"), ("GPU", spec.gpus, "gpus")):
        if need > have.get(key, 0):
            raise TunerError(f"{spec.path}: resources.{name}: each trial asks for {need:g} {key}, the Ray "
                             f"cluster has {have.get(key, 0):g}. Lower it, or join a larger cluster (--address).")


def make_tuner(spec: SearchSpec, data: FeatureSet, exp_dir: Path, search_id: str, resume: bool,
               verbose: bool) -> tune.Tuner:
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, data=data, fixed=spec.fixed, cpus=spec.cpus,
                             checkpoint_every=spec.checkpoint_every, plots_root=str(exp_dir / PLOTS_DIR)),
        {"cpu": spec.cpus, "gpu": spec.gpus})
    # Tune's saved state names the checkpoints a resume starts from; by default it is written
    # every 10+ s, so a crash would replay that much of every running trial.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "3")
    # Tune warns about every trial that has not started (no results to load): noise here.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    if resume:  # finished trials stay; the rest continue from checkpoints; Optuna's state returns
        return tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_errored=True,
                                  param_space=spec.param_space())
    single = not spec.multi_objective
    run_config = tune.RunConfig(
        name=exp_dir.name, storage_path=str(exp_dir.parent), callbacks=[TrackingCallback(search_id)],
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


# ------------------------------------------------------------------ baselines and results


def baselines(spec: SearchSpec, data: FeatureSet) -> dict[str, float]:
    """What an embedding must beat: kNN on the input features, and PCA at each searched latent_dim."""
    from sklearn.decomposition import PCA

    from tuner.metrics import knn_accuracy, reconstruction_error

    k = spec.base_config.knn_k
    out = {"baseline_input_knn_accuracy": knn_accuracy(data.x_train, data.y_train, data.x_test, data.y_test, k)}
    for dim in baseline_dims(spec):
        if dim > min(data.x_train.shape):
            continue
        pca = PCA(n_components=dim, random_state=0).fit(data.x_train)
        z_train, z_test = pca.transform(data.x_train), pca.transform(data.x_test)
        out[f"baseline_pca{dim}_knn_accuracy"] = knn_accuracy(z_train, data.y_train, z_test, data.y_test, k)
        out[f"baseline_pca{dim}_recon_error"] = reconstruction_error(pca.inverse_transform(z_test), data.x_test)
    return out


def baseline_dims(spec: SearchSpec) -> list[int]:
    p = spec.params.get("latent_dim")
    if p is None:
        return [spec.base_config.latent_dim]
    if p.values:
        return sorted({int(v) for v in p.values})
    dims = list(range(int(p.low), int(p.high) + 1, p.q or 1))
    return dims if len(dims) <= 8 else [dims[0], dims[-1]]  # a wide range: its two ends


def _row_status(spec: SearchSpec, session: _Session, trial: Any) -> str:
    """What ended in this run says itself; Tune marks interrupted trials TERMINATED too."""
    if trial.trial_id in session.ended:
        return session.ended[trial.trial_id]
    if trial.trial_id in session.open_trials or "iteration" not in trial.last_result:  # never reported
        return "UNFINISHED"
    if trial.status == "ERROR":
        return "FAILED"
    return _ended_status(spec, trial) if trial.status == "TERMINATED" else "UNFINISHED"


def results_table(spec: SearchSpec, session: _Session) -> pd.DataFrame:
    """One row per trial: id, status, searched values, last reported metrics; best first."""
    rows = []
    for trial in session.trials:
        status = _row_status(spec, session, trial)
        values = spec.trial_config(trial.config).to_dict()
        row = {"trial_id": trial.trial_id, "status": status}
        row.update({k: json.dumps(values[k]) if isinstance(values[k], (list, dict)) else values[k]
                    for k in spec.params})
        row.update({k: trial.last_result.get(k, np.nan) for k in REPORTED})
        rows.append(row)
    table = pd.DataFrame(rows, columns=["trial_id", "status", *spec.params, *REPORTED])
    table = table.dropna(axis=1, how="all")  # kl for AEs only, fine_knn_accuracy when merged
    for metric in spec.metric:
        if metric not in table:
            table[metric] = np.nan
    if spec.multi_objective:
        table.insert(2, "pareto", pareto_mask(table[list(spec.metric)].to_numpy(float), spec.mode))
        return table.sort_values(["pareto", spec.metric[0]], ascending=[False, spec.mode[0] == "min"],
                                 na_position="last", kind="stable").reset_index(drop=True)
    return table.sort_values(spec.metric[0], ascending=spec.mode[0] == "min", na_position="last",
                             kind="stable").reset_index(drop=True)


def pareto_mask(values: np.ndarray, modes: tuple[str, ...]) -> np.ndarray:
    """Rows no other row dominates (at least as good in every metric, better in one)."""
    signed = values * np.where(np.asarray(modes) == "max", 1.0, -1.0)
    finite = np.all(np.isfinite(signed), axis=1)
    mask = np.zeros(len(signed), dtype=bool)
    others = signed[finite]
    for i in np.flatnonzero(finite):
        dominated = np.all(others >= signed[i], axis=1) & np.any(others > signed[i], axis=1)
        mask[i] = not dominated.any()
    return mask


def print_summary(spec: SearchSpec, table: pd.DataFrame, experiment: str, uri: str, exp_dir: Path,
                  seconds: float, status: str) -> None:
    counts = ", ".join(f"{n} {s.lower()}" for s, n in table["status"].value_counts().items()) if len(table) else "none"
    print(f"\nsearch {'interrupted' if status == 'KILLED' else status.lower()}: {len(table)} trials ({counts}) in {seconds:.0f} s")
    shown = table[table["pareto"]] if spec.multi_objective else table.head(10)
    what = f"Pareto front of {', '.join(spec.metric)}" if spec.multi_objective else \
        f"best trials by {spec.metric[0]} ({spec.mode[0]})"
    cols = [c for c in ("trial_id", "status", *spec.params, *spec.metric, "knn_accuracy", "recon_error",
                        "iteration") if c in table]
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(f"{what}:\n{shown[list(dict.fromkeys(cols))].to_string(index=False)}")
    print(f"\nMLflow experiment {experiment!r} in {mask_uri(uri)}\n"
          f"  tuner report --tracking-uri {mask_uri(uri)} --experiment {experiment}\n"
          f"  tuner ui --tracking-uri {mask_uri(uri)}   (or: mlflow ui --backend-store-uri {mask_uri(uri)})\n"
          f"Tune results and checkpoints: {exp_dir}")
    if status == "KILLED":
        print(f"interrupted: continue with `tuner search --space {spec.path} --resume` "
              f"(same --storage-path / --experiment / --set)")


class _CallableModule(types.ModuleType):
    """`tuner.search` names both this module and the API function: importing the module binds
    the name to the module, so the module itself answers `tuner.search(...)`."""

    def __call__(self, spec_or_path: SearchSpec | str | Path, **kwargs: Any) -> pd.DataFrame:
        return search(spec_or_path, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
