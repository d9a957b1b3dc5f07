"""The Ray Tune trainable: thin glue between Tune and `fit` (threads, checkpoints, plots).

The data arrives through Ray's object store (`tune.with_parameters`), loaded once on the
driver: a trial never reads dataset files or the feature cache, so it runs on any node.
Fixed settings travel beside Tune's sampled config and merge in `trial_config`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.train.constants import RAY_CHDIR_TO_TRIAL_DIR

from tuner.core.config import TrialConfig
from tuner.data.features import FeatureSet
from tuner.space.spec import trial_config
from tuner.system.processes import pace_point
from tuner.system.tune_storage import PLOTS_DIR
from tuner.trainer.evaluation import embed_and_reconstruct
from tuner.trainer.train import TrainState, fit

CHECKPOINT_FILE = "train_state.pt"


def run_trial(
    config: dict[str, Any],
    *,
    data: FeatureSet,
    fixed: dict[str, Any],
    cpus: float,
    checkpoint_every: int,
) -> None:
    """One trial: report every evaluation to Tune, checkpoint every `checkpoint_every` of them.

    The last report carries a checkpoint with the plots: Tune persists it to the storage path
    before the report returns, so the driver finds them whichever node the trial ran on.
    """
    torch.set_num_threads(max(1, int(cpus)))  # else every trial's torch uses every core
    # Arrays from the object store are read-only views; fit never writes into them.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    # a line per checkpoint
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    if data.has_test:  # the driver ships data.without_test(): a trial must not see what selects it
        raise ValueError("a trial received the test split; selection would then read it")
    cfg = trial_device(trial_config(fixed, config), ray.get_gpu_ids())
    resume = load_checkpoint(tune.get_checkpoint())
    # Tune's results only (MLflow logs the known metrics): which trials resumed, and where they ran.
    extra = {
        "restored_from_iteration": float(resume["iteration"] if resume else 0),
        "node_id": ray.get_runtime_context().get_node_id(),
    }

    def report_to_tune(metrics: dict[str, float], state: TrainState) -> None:
        # Tests stop searches mid-trial: paced here, a trial stays RUNNING for as long as a test
        # needs on any machine, without thousands of iterations to outlast the test's steps.
        pace_point("trials")
        metrics = {**metrics, **extra}
        last = state.iteration >= cfg.iterations
        if not (last or should_checkpoint(cfg, state.iteration, checkpoint_every)):
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(dir=checkpoint_staging_root()) as tmp:
            torch.save(state.state_dict(), Path(tmp) / CHECKPOINT_FILE)
            if last:  # before the last report: a scheduler may stop the trial as soon as it sees it
                write_plots(state, cfg, data, Path(tmp) / PLOTS_DIR)
            # Tune copies the directory into the trial's storage before report returns.
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    fit(cfg, data, on_evaluation=report_to_tune, resume=resume)


def checkpoint_staging_root() -> str | None:
    """Where a report's checkpoint is written before Tune copies it into the trial's storage: the
    trial's working directory, in Ray's session folder on the trial's node, where Tune moves each
    trial unless RAY_CHDIR_TO_TRIAL_DIR=0 (then the system's temporary folder, None).

    Tune copies the folder before `report` returns, but `report` then waits for the driver: a
    driver killed there takes the trial's process with it, and the folder stays behind. In the
    system's temporary folder that was a stray `tmpXXXX/train_state.pt` per running trial."""
    # Read as Ray's session reads it when it decides whether to move the trial.
    moved = bool(int(os.environ.get(RAY_CHDIR_TO_TRIAL_DIR, "1")))
    return os.getcwd() if moved else None


def trial_device(cfg: TrialConfig, gpu_ids: list) -> TrialConfig:
    """`device: auto` follows the trial's GPU assignment (a fraction of one GPU counts), not
    whether the machine has one: a trial given no GPU must not take one from trials that were."""
    if cfg.device != "auto":
        return cfg
    return cfg.replace(device="cuda" if gpu_ids else "cpu")


def should_checkpoint(cfg: TrialConfig, iteration: int, every: int) -> bool:
    """Every `every`-th evaluation, counted from the start so a resumed trial keeps the rhythm.

    The last evaluation is not counted here: it always gets one, holding the plots.
    """
    return (
        iteration < cfg.iterations
        and iteration % cfg.eval_every == 0
        and (iteration // cfg.eval_every) % every == 0
    )


def load_checkpoint(checkpoint: tune.Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as path:
        # On the CPU first: a GPU trial retried on a node without one still loads (fit moves it).
        return torch.load(Path(path) / CHECKPOINT_FILE, weights_only=True, map_location="cpu")


def write_plots(state: TrainState, cfg: TrialConfig, data: FeatureSet, out: Path) -> Path:
    """Figures the driver attaches to the trial's MLflow run (they travel in the last
    checkpoint)."""
    from tuner.trainer.plots import plot_embedding, plot_loss_curves, plot_reconstructions

    device = next(state.model.parameters()).device
    z_val, x_hat = embed_and_reconstruct(state.model, torch.from_numpy(data.x_val).to(device))
    out.mkdir(parents=True, exist_ok=True)
    title = (
        f"{cfg.constraint} {cfg.encoder}, mu={cfg.mu:g}, latent_dim={cfg.latent_dim} (validation)"
    )
    plot_embedding(z_val, data.y_val, data.label_names, out / "embedding.png", title)
    plot_loss_curves(state.history, out / "loss_curves.png")
    if data.image_shape is not None:  # raw pixels: reconstructions can be drawn as images
        plot_reconstructions(data.x_val, x_hat, data.image_shape, out / "reconstructions.png")
    return out
