"""Ray Tune assembled for one search: the trainable with its resources, searcher, scheduler,
storage, failure and checkpoint settings, and the tracking callback."""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from typing import Any

from ray import tune
from ray.tune.search import Repeater

from tuner.data.features import FeatureSet
from tuner.runner.callback import TrackingCallback
from tuner.runner.moasha import MOASHAScheduler
from tuner.runner.moved_modules import alias_moved_modules
from tuner.runner.trial import run_trial
from tuner.space.spec import REPEAT_KEY, SearchSpec
from tuner.system.tune_storage import ExperimentDir
from tuner.tracking.warm_start import WarmStart


def make_tuner(
    spec: SearchSpec,
    data: FeatureSet,
    exp_dir: ExperimentDir,
    callback: TrackingCallback,
    resume: bool,
    tune_verbosity: int,
    warm: WarmStart | None = None,
) -> tune.Tuner:
    """The Tuner of a fresh search, or the restored one of a resumed search; `callback` receives
    Tune's events in either."""
    trainable = tune.with_resources(
        # Trials get no test split: they cannot select by it (see runner/final_test.py).
        tune.with_parameters(
            run_trial,
            data=data.without_test(),
            fixed=spec.fixed,
            cpus=spec.cpus,
            checkpoint_every=spec.checkpoint_every,
        ),
        {"cpu": spec.cpus, "gpu": spec.gpus},
    )
    # Tune's saved state names the checkpoints a resume starts from; by default it is written
    # every 10+ s, so a crash would replay that much of every running trial.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "3")
    # Tune warns about every trial that has not started (no results to load): noise here.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # Tune gets a path in a filesystem object, never a URI: it prints and saves what it is given,
    # and the filesystem was built from a URI without credentials (see tuner.system.tune_storage).
    path, fs = tune_location(exp_dir)
    if resume:  # finished trials stay; the rest continue from checkpoints; Optuna's state returns
        alias_moved_modules()  # a search started before tuner/core and tuner/system existed
        restored = tune.Tuner.restore(
            path,
            trainable=trainable,
            resume_errored=True,
            param_space=spec.param_space(),
            storage_filesystem=fs,
        )
        return with_live_callback(restored, callback)
    single = not spec.multi_objective
    # a new worker costs ~1.3 s (it imports torch); reuse saves most of it
    tune_config = tune.TuneConfig(
        metric=spec.metric[0] if single else None,
        mode=spec.mode[0] if single else None,
        search_alg=_repeated(spec, _searcher(spec, warm)),
        scheduler=_scheduler(spec, exp_dir),
        # Under Repeater num_samples counts every trial, repeats included; a seed axis multiplies
        # itself.
        num_samples=spec.samples * spec.repeats if spec.search == "optuna" else spec.samples,
        max_concurrent_trials=spec.max_concurrent if spec.search == "optuna" else None,
        reuse_actors=True,
    )
    return tune.Tuner(
        trainable,
        param_space=spec.param_space(),
        tune_config=tune_config,
        run_config=make_run_config(spec, exp_dir, callback, tune_verbosity),
    )


def with_live_callback(tuner: tune.Tuner, callback: TrackingCallback) -> tune.Tuner:
    """A restored Tuner's run config is the one pickled in tuner.pkl, whose TrackingCallback holds
    only its search id (TrackingCallback.__getstate__): this search's live one takes its place.
    Tune.restore takes no run config, so this reaches into the Tuner (a local one: Ray Client's
    remote Tuner would run callbacks away from the driver, which tuner does not support)."""
    local = getattr(tuner, "_local_tuner", None)
    if local is None:
        raise RuntimeError(
            "this Ray's restored Tuner has no local run config: the search's callback "
            "cannot be attached on --resume (Ray Client is not supported)"
        )
    run_config = local.get_run_config()
    run_config.callbacks = [
        callback if isinstance(c, TrackingCallback) else c for c in run_config.callbacks or []
    ]
    if callback not in run_config.callbacks:
        run_config.callbacks.insert(0, callback)
    return tuner


def make_run_config(
    spec: SearchSpec, exp_dir: ExperimentDir, callback: tune.Callback, tune_verbosity: int
) -> tune.RunConfig:
    """What Tune pickles into tuner.pkl beside its results: it must hold no credentials."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    path, fs = tune_location(exp_dir)
    # Tune's own loggers minus TensorBoard's: result.json feeds `tuner sync`, progress.csv Tune's
    # analysis; the TensorBoard writer cost the driver an import and a flush per result (CPU the
    # trials share) for files nobody opens: the search is read in MLflow.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    return tune.RunConfig(
        name=exp_dir.name,
        storage_path=path.rstrip("/").rsplit("/", 1)[0] or "/",
        storage_filesystem=fs,
        callbacks=[callback, JsonLoggerCallback(), CSVLoggerCallback()],
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # No num_to_keep: Tune deletes old checkpoints before its saved state stops naming them,
        # and a crash in between fails the trial on resume. Ended trials' checkpoints go instead,
        # once Tune's saved state records them ended (runner/callback.py).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        verbose=tune_verbosity,
    )


def tune_location(exp_dir: ExperimentDir) -> tuple[str, Any]:
    """(the experiment directory, the filesystem) as Tune takes them; a local directory as a plain
    path."""
    return (exp_dir.path, exp_dir.fs) if exp_dir.is_uri else (exp_dir.path, None)


def _searcher(spec: SearchSpec, warm: WarmStart | None = None) -> Any:
    """Tune's generator for grid/random files; Optuna's TPE otherwise, told `warm`'s earlier
    results before its first proposal (TPE samples at random until it holds 10 finished trials)."""
    if spec.search != "optuna":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        # constant_grid_search: random values drawn once per sample, then crossed with the grid,
        # so the repeats (a grid axis) of a random configuration share its values.
        return BasicVariantGenerator(
            random_state=spec.seed,
            max_concurrent=spec.max_concurrent or 0,
            constant_grid_search=spec.repeats > 1,
        )
    import optuna

    from tuner.runner.warm_optuna import WarmOptunaSearch

    sampler = optuna.samplers.TPESampler(seed=spec.seed)
    moasha = spec.scheduler is not None and spec.scheduler.type == "moasha"
    earlier: dict[str, Any] = {
        "stopped": warm.stopped if warm else None,
        "budget": spec.scheduler.max_t if moasha else None,
    }
    if warm and warm.points:
        earlier.update(points_to_evaluate=warm.points, evaluated_rewards=warm.rewards)
    if spec.multi_objective:  # Tune's own metric stays unset: it takes one metric only
        return WarmOptunaSearch(
            metric=list(spec.metric), mode=list(spec.mode), sampler=sampler, **earlier
        )
    return WarmOptunaSearch(sampler=sampler, **earlier)


def _repeated(spec: SearchSpec, searcher: Any) -> Any:
    """Optuna with repeats: Ray's Repeater suggests each configuration `repeats` times, sets the
    repeat index (the seed offset, see space/spec.py REPEAT_KEY) and tells TPE the mean."""
    if spec.repeats == 1 or spec.search != "optuna":
        return searcher
    from ray.tune.search.repeater import TRIAL_INDEX

    assert TRIAL_INDEX == REPEAT_KEY, (
        "Ray renamed the repeat index: update space/spec.py REPEAT_KEY"
    )
    return ResumableRepeater(searcher, repeat=spec.repeats, set_index=True)


class ResumableRepeater(Repeater):
    """Ray's Repeater saves only the searcher it wraps. On --resume its groups (which trials repeat
    which configuration) were lost, and the first restored repeat to finish raised KeyError; here
    one file holds both."""

    def save(self, checkpoint_path: str) -> None:
        inner = f"{checkpoint_path}.searcher"
        self.searcher.save(inner)
        with open(inner, "rb") as f:
            searcher_bytes = f.read()
        os.remove(inner)
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"searcher": searcher_bytes, "repeater": self.get_state()}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            saved = pickle.load(f)  # noqa: S301 - Tune's own state file, written by save above
        with tempfile.TemporaryDirectory() as tmp:
            inner = os.path.join(tmp, "searcher.pkl")
            with open(inner, "wb") as f:
                f.write(saved["searcher"])
            self.searcher.restore(inner)
        self.set_state(saved["repeater"])


def _scheduler(spec: SearchSpec, exp_dir: ExperimentDir) -> Any:
    if spec.scheduler is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    s = spec.scheduler
    # its rungs are kept in exp_dir: Tune's saved state leaves schedulers out
    if s.type == "moasha":
        return MOASHAScheduler(
            spec.objective,
            time_attr="iteration",
            max_t=s.max_t,
            grace_period=s.grace_period,
            reduction_factor=s.reduction_factor,
            brackets=s.brackets,
            exp_dir=exp_dir,
        )
    return ASHAScheduler(
        time_attr="iteration",
        max_t=s.max_t,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
        brackets=s.brackets,
    )
