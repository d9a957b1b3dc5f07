"""`fit(cfg, data, on_evaluation)`: the training loop of one trial. Pure PyTorch: no Ray, no MLflow.

A trial trains on the training split and is measured on validation; `fit` never reads the
test split, which `evaluate_split` measures once, for the trials a search selected.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tuner.core.config import TrialConfig
from tuner.data.features import FeatureSet
from tuner.errors import TrainingDiverged
from tuner.trainer.augment import image_to_jitter, jitter, jitters
from tuner.trainer.device import device_generator, resolve_device
from tuner.trainer.evaluation import measure
from tuner.trainer.labels import labeled_rows_of
from tuner.trainer.losses import (
    batch_all_triplet_loss,
    contrastive_loss,
    kl_divergence,
    reconstruction_loss,
    total_loss,
    triplet_loss,
)
from tuner.trainer.miners import Tuples, mine
from tuner.trainer.networks import AutoEncoder, build_model
from tuner.trainer.optim import FusedAdam, lr_at, make_optimizer, set_lr
from tuner.trainer.weak_samplers import Batch, BatchSource


@dataclass
class TrainState:
    """What a checkpoint holds; `state_dict()` loads back with `torch.load(weights_only=True)`."""

    iteration: int
    model: AutoEncoder
    optimizer: FusedAdam
    generator: torch.Generator
    history: list[dict[str, float]]
    train_seconds: float
    device_generator: torch.Generator | None = None  # batches drawn on a GPU: its own generator

    def state_dict(self) -> dict[str, Any]:
        """A snapshot: later steps do not change it (the live state_dicts share storage)."""
        state = {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": [dict(h) for h in self.history],
            "train_seconds": self.train_seconds,
        }
        if self.device_generator is not None:
            state["device_generator"] = self.device_generator.get_state()
            # dropout there draws from CUDA's default generator
            if self.device_generator.device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state()
        return copy.deepcopy(state)


# Called after every evaluation with its metrics and the live state (Tune's report and checkpoint, a
# console).
OnEvaluation = Callable[[dict[str, float], TrainState], None]


@dataclass
class FitResult:
    """The last evaluation's metrics (on validation), their history, and what plots need."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    model: AutoEncoder
    val_embedding: np.ndarray
    val_reconstruction: np.ndarray
    seconds: float


@dataclass
class _Tensors:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor


@dataclass
class _Running:
    """Loss sums since the last evaluation, kept as tensors to avoid a sync per term."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: int = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for key, value in terms.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach()
        self.steps += 1

    def means(self) -> dict[str, float]:
        out = {key: float(value) / max(self.steps, 1) for key, value in self.sums.items()}
        self.sums, self.steps = {}, 0
        return out


# Steps between reads of the summed loss (the divergence check): a read is free on the CPU,
# a host sync on a GPU, which otherwise runs ahead of Python by many steps.
CHECK_EVERY = {"cpu": 1}
CHECK_EVERY_ON_DEVICE = 50


def metric_loss(
    cfg: TrialConfig,
    z: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    labels_key: bytes | None = None,
) -> torch.Tensor:
    """The contrastive or triplet loss over the pairs / triplets mined from one batch."""
    if cfg.constraint == "triplet" and cfg.mining == "all" and cfg.max_tuples is None:
        return batch_all_triplet_loss(z, labels, cfg.margin)  # summed without enumerating
    mined = mine(
        labels, z, cfg.constraint, cfg.mining, cfg.margin, cfg.max_tuples, generator, labels_key
    )
    loss = contrastive_loss if cfg.constraint == "pairwise" else triplet_loss
    return loss(z, *mined.tuples, cfg.margin, keep=mined.keep)


def judged_loss(cfg: TrialConfig, z: torch.Tensor, judged: Tuples) -> torch.Tensor:
    """The contrastive or triplet loss over a batch's judgments (a constraints file), as given."""
    return (contrastive_loss if cfg.constraint == "pairwise" else triplet_loss)(
        z, *judged, cfg.margin
    )


def training_step(
    cfg: TrialConfig,
    model: AutoEncoder,
    xb: torch.Tensor,
    yb: torch.Tensor | None,
    generator: torch.Generator,
    labels_key: bytes | None = None,
    image: tuple[int, int, int] | None = None,
    *,
    n_metric: int | None = None,
    judged: Tuples | None = None,
) -> dict[str, torch.Tensor]:
    """The loss terms of one batch. Terms weighted by zero are not computed at all, so
    mu = 1 leaves the decoder without gradient and mu = 0 skips mining; nor are they returned:
    a 0 would read as a perfect recon_loss at mu = 1 (the search checks refuse ranking by a term
    some trial does not compute, see space.checks.check_objective). `labels_key`: yb's
    bytes as the host knows them (the mining memo then never reads yb back from a GPU).
    With augmentation on, the model sees jittered `image`s and reconstructs the clean ones:
    the evaluations measure clean images, and the embedding should not move with the jitter.
    With weak supervision only the first `n_metric` rows (labeled by `yb`, or the items of the
    `judged` tuples) reach the metric term; the reconstruction and KL terms average over all
    rows."""
    zero = xb.new_zeros(())
    seen = (
        jitter(xb, image, cfg.augment_shift, cfg.augment_degrees, generator) if jitters(cfg) else xb
    )
    out = model(seen, decode=cfg.mu < 1.0)
    z = out.embedding if n_metric is None else out.embedding[:n_metric]
    if cfg.mu == 0.0:
        metric = zero
    elif judged is not None:
        metric = judged_loss(cfg, z, judged)
    else:
        metric = metric_loss(cfg, z, yb, generator, labels_key)
    recon = reconstruction_loss(out.x_hat, xb) if out.x_hat is not None else zero
    kl = kl_divergence(out.mean, out.logvar) if out.mean is not None and cfg.mu < 1.0 else zero
    # The reconstruction is a mean over features while the KL sums over latent dims; the KL
    # is put on the same per-feature footing, so beta = 1 is a Gaussian decoder's ELBO
    # divided by n_features. Unscaled, the KL swamped the reconstruction (posterior collapse).
    kl_weight = cfg.beta / xb.shape[1]
    terms = {"loss": total_loss(metric, recon, kl, cfg.mu, kl_weight)}
    if cfg.mu > 0.0:
        terms["metric_loss"] = metric
    if cfg.mu < 1.0:
        terms["recon_loss"] = recon
        if cfg.encoder == "vae":
            terms["kl"] = kl
    return terms


def evaluate(
    cfg: TrialConfig, model: AutoEncoder, data: FeatureSet, tensors: _Tensors
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Every metric on the validation split, with its embedding and reconstruction."""
    return measure(cfg, model, data, tensors.x_train, tensors.x_val, "val")


def _restore(state: TrainState, resume: dict[str, Any]) -> None:
    state.model.load_state_dict(resume["model"])
    state.optimizer.load_state_dict(resume["optimizer"])
    state.generator.set_state(resume["generator"])
    torch.set_rng_state(resume["torch_rng"])
    if state.device_generator is not None and "device_generator" in resume:
        state.device_generator.set_state(resume["device_generator"])
    if "cuda_rng" in resume and torch.cuda.is_available():
        torch.cuda.set_rng_state(resume["cuda_rng"])
    state.iteration = int(resume["iteration"])
    state.history = [dict(h) for h in resume["history"]]
    state.train_seconds = float(resume["train_seconds"])


def _start(
    cfg: TrialConfig, data: FeatureSet, resume: dict[str, Any] | None
) -> tuple[TrainState, _Tensors, BatchSource]:
    """A seeded model, optimizer and batch sampler, restored from `resume` when given.

    The training data moves to the device once, here; on a GPU the batches are drawn there too."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    on_device = device_generator(device, cfg.seed)
    model = build_model(cfg, data.n_features).to(device)
    # in place: the state dict keeps its keys (checkpoints, logged models)
    if cfg.torch_compile != "none":
        model.compile(mode=cfg.torch_compile)
    optimizer = make_optimizer(cfg, model)
    state = TrainState(0, model, optimizer, generator, [], 0.0, on_device)
    if resume is not None:
        _restore(state, resume)
    tensors = _Tensors(
        torch.from_numpy(data.x_train).to(device),
        torch.from_numpy(data.y_train).to(device),
        torch.from_numpy(data.x_val).to(device),
    )
    if cfg.constraints is not None and data.judgments is None:
        raise ValueError(
            "constraints is set, but the data carries no judgments (load it with this config)"
        )
    judgments = data.judgments if cfg.constraints is not None else None
    batches = BatchSource(
        cfg,
        tensors.y_train,
        labeled_rows_of(cfg, data.y_train),
        judgments,
        generator,
        device,
        on_device,
    )
    return state, tensors, batches


def _check_finite(cfg: TrialConfig, running: _Running, first: int, last: int) -> None:
    """TrainingDiverged when a loss of iterations first..last was not finite. The loss terms
    are non-negative, so their running sum is finite exactly when every one of them was."""
    total = float(running.sums["loss"])
    if not math.isfinite(total):
        where = (
            f"at iteration {last}" if first == last else f"at an iteration from {first} to {last}"
        )
        raise TrainingDiverged(
            f"the loss became {total} {where} "
            f"(lr={cfg.lr}, mu={cfg.mu}, margin={cfg.margin}); lower lr or margin."
        )


def _evaluation(
    cfg: TrialConfig,
    state: TrainState,
    data: FeatureSet,
    tensors: _Tensors,
    running: _Running,
    started: float,
    on_evaluation: OnEvaluation | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Every metric on validation, the mean loss terms since the last one, into the history."""
    metrics, z_val, x_hat = evaluate(cfg, state.model, data, tensors)
    metrics = {
        "iteration": float(state.iteration),
        **metrics,
        **running.means(),
        "train_seconds": state.train_seconds,
        "seconds": time.perf_counter() - started,
    }
    state.history.append(metrics)
    if on_evaluation is not None:
        on_evaluation(metrics, state)
    return z_val, x_hat


def fit(
    cfg: TrialConfig,
    data: FeatureSet,
    on_evaluation: OnEvaluation | None = None,
    resume: dict[str, Any] | None = None,
) -> FitResult:
    """Train one trial; evaluate on validation every `eval_every` iterations and at the end.

    `data` may lack its test split (`FeatureSet.without_test()`, what trials receive). The
    loss is read only every CHECK_EVERY steps and at evaluations: no host sync per GPU step.
    """
    started = time.perf_counter()
    state, tensors, sampler = _start(cfg, data, resume)
    model, optimizer, device = state.model, state.optimizer, tensors.x_train.device
    generator = state.device_generator or state.generator  # where mining's random draws happen
    every, checked = CHECK_EVERY.get(device.type, CHECK_EVERY_ON_DEVICE), state.iteration
    running = _Running()
    image = image_to_jitter(cfg, data)
    z_val = x_hat = None
    model.train()
    tick = time.perf_counter()
    for iteration in range(state.iteration + 1, cfg.iterations + 1):
        batch: Batch = sampler.next()
        terms = training_step(
            cfg,
            model,
            tensors.x_train[batch.idx],
            batch.labels,
            generator,
            batch.labels_key,
            image,
            n_metric=batch.n_metric,
            judged=batch.judged,
        )
        running.add(terms)
        evaluating = iteration % cfg.eval_every == 0 or iteration == cfg.iterations
        if evaluating or iteration - checked >= every:
            _check_finite(cfg, running, checked + 1, iteration)
            checked = iteration
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if cfg.lr_schedule != "constant":
            set_lr(optimizer, lr_at(cfg, iteration))
        optimizer.step()
        state.iteration = iteration
        if evaluating:
            state.train_seconds += time.perf_counter() - tick
            z_val, x_hat = _evaluation(cfg, state, data, tensors, running, started, on_evaluation)
            tick = time.perf_counter()
    if z_val is None:  # resumed at the last iteration: nothing left to train
        _, z_val, x_hat = evaluate(cfg, model, data, tensors)
    return FitResult(
        state.history[-1], state.history, model, z_val, x_hat, time.perf_counter() - started
    )
