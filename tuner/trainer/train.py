"""`fit(cfg, data, report)`: the training loop of one trial. Pure PyTorch: no Ray, no MLflow.

A trial trains on the training split and is measured on validation; `fit` never reads the
test split, which `evaluate_split` measures once, for the trials a search selected.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from tuner.trainer.config import TrialConfig
from tuner.data.features import FeatureSet
from tuner.errors import TrainingDiverged, TunerError
from tuner.trainer.losses import contrastive_loss, kl_divergence, reconstruction_loss, total_loss, triplet_loss
from tuner.trainer.metrics import evaluate_embedding
from tuner.trainer.models import AutoEncoder, build_model
from tuner.trainer.optim import lr_at, make_optimizer, set_lr
from tuner.trainer.sampling import StratifiedBatchSampler, mine


@dataclass
class TrainState:
    """What a checkpoint holds; `state_dict()` loads back with `torch.load(weights_only=True)`."""

    iteration: int
    model: AutoEncoder
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    history: list[dict[str, float]]
    train_seconds: float

    def state_dict(self) -> dict[str, Any]:
        """A snapshot: later steps do not change it (the live state_dicts share storage)."""
        return copy.deepcopy({
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": [dict(h) for h in self.history],
            "train_seconds": self.train_seconds,
        })


Reporter = Callable[[dict[str, float], TrainState], None]


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():  # else torch fails deep inside fit()
        raise TunerError("device = cuda but torch sees no CUDA device: use device: auto or cpu.")
    return torch.device(name)


def metric_loss(cfg: TrialConfig, z: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The contrastive or triplet loss over the pairs / triplets mined from one batch."""
    tuples = mine(labels, z, cfg.constraint, cfg.mining, cfg.margin, cfg.max_tuples, generator)
    if cfg.constraint == "pairwise":
        return contrastive_loss(z, *tuples, cfg.margin)
    return triplet_loss(z, *tuples, cfg.margin)


def training_step(cfg: TrialConfig, model: AutoEncoder, xb: torch.Tensor, yb: torch.Tensor,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The loss terms of one batch. Terms weighted by zero are not computed at all, so
    mu = 1 leaves the decoder without gradient and mu = 0 skips mining."""
    zero = xb.new_zeros(())
    out = model(xb, decode=cfg.mu < 1.0)
    metric = metric_loss(cfg, out.embedding, yb, generator) if cfg.mu > 0.0 else zero
    recon = reconstruction_loss(out.x_hat, xb) if out.x_hat is not None else zero
    kl = kl_divergence(out.mean, out.logvar) if out.mean is not None and cfg.mu < 1.0 else zero
    # The reconstruction is a mean over features while the KL sums over latent dims; the KL
    # is put on the same per-feature footing, so beta = 1 is a Gaussian decoder's ELBO
    # divided by n_features. Unscaled, the KL swamped the reconstruction (posterior collapse).
    kl_weight = cfg.beta / xb.shape[1]
    terms = {"loss": total_loss(metric, recon, kl, cfg.mu, kl_weight), "metric_loss": metric, "recon_loss": recon}
    if cfg.encoder == "vae":
        terms["kl"] = kl
    return terms


@torch.no_grad()
def embed_and_reconstruct(model: AutoEncoder, x: torch.Tensor, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    was_training = model.training
    model.eval()
    zs, xs = [], []
    for start in range(0, len(x), chunk):
        out = model(x[start:start + chunk])
        zs.append(out.embedding.float().cpu())
        xs.append(out.x_hat.float().cpu())
    model.train(was_training)
    return torch.cat(zs).numpy(), torch.cat(xs).numpy()


@torch.no_grad()
def embed(model: AutoEncoder, x: torch.Tensor, chunk: int = 8192) -> np.ndarray:
    """Embeddings alone, in eval mode: the kNN reference needs no reconstruction."""
    was_training = model.training
    model.eval()
    zs = [model(x[start:start + chunk], decode=False).embedding.float().cpu() for start in range(0, len(x), chunk)]
    model.train(was_training)
    return torch.cat(zs).numpy()


def evaluate(cfg: TrialConfig, model: AutoEncoder, data: FeatureSet,
             tensors: _Tensors) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Every metric on the validation split, with its embedding and reconstruction."""
    return _measure(cfg, model, data, tensors.x_train, tensors.x_val, "val")


def evaluate_split(cfg: TrialConfig, model: AutoEncoder, data: FeatureSet, split: str = "test") -> dict[str, float]:
    """Every metric of a trained model on one split; keys carry the prefix `test_` for the test split.

    For the driver after a search (the selected trials only) and `tuner train`: a trial's own
    evaluations never see the test split.
    """
    x, _, _ = data.split(split)
    device = next(model.parameters()).device
    metrics, _, _ = _measure(cfg, model, data, torch.from_numpy(data.x_train).to(device),
                             torch.from_numpy(x).to(device), split)
    prefix = "test_" if split == "test" else ""
    return {prefix + key: value for key, value in metrics.items()}


def _measure(cfg: TrialConfig, model: AutoEncoder, data: FeatureSet, x_train: torch.Tensor, x: torch.Tensor,
             split: str) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    # The training embedding is the reference of kNN and retrieval; split_seed (fixed per
    # search) seeds k-means and the trustworthiness subsample, so trials compare on the same points.
    x_np, y, fine_y = data.split(split)
    z_train = embed(model, x_train)
    z, x_hat = embed_and_reconstruct(model, x)
    metrics = evaluate_embedding(z_train, data.y_train, z, y, x_np, x_hat, k=cfg.knn_k, seed=cfg.split_seed,
                                 ref_fine_y=data.fine_y_train, fine_y=fine_y)
    return metrics, z, x_hat


def _restore(state: TrainState, resume: dict[str, Any]) -> None:
    state.model.load_state_dict(resume["model"])
    state.optimizer.load_state_dict(resume["optimizer"])
    state.generator.set_state(resume["generator"])
    torch.set_rng_state(resume["torch_rng"])
    state.iteration = int(resume["iteration"])
    state.history = [dict(h) for h in resume["history"]]
    state.train_seconds = float(resume["train_seconds"])


def _start(cfg: TrialConfig, data: FeatureSet,
           resume: dict[str, Any] | None) -> tuple[TrainState, _Tensors, StratifiedBatchSampler]:
    """A seeded model, optimizer and batch sampler, restored from `resume` when given."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg, data.n_features).to(device)
    optimizer = make_optimizer(cfg, model)
    state = TrainState(0, model, optimizer, generator, [], 0.0)
    if resume is not None:
        _restore(state, resume)
    tensors = _Tensors(torch.from_numpy(data.x_train).to(device), torch.from_numpy(data.y_train).to(device),
                       torch.from_numpy(data.x_val).to(device))
    return state, tensors, StratifiedBatchSampler(data.y_train, cfg.batch_size, generator)


def fit(cfg: TrialConfig, data: FeatureSet, report: Reporter | None = None,
        resume: dict[str, Any] | None = None) -> FitResult:
    """Train one trial; evaluate on validation every `eval_every` iterations and at the end.

    `data` may lack its test split (`FeatureSet.without_test()`, what trials receive).
    """
    started = time.perf_counter()
    state, tensors, sampler = _start(cfg, data, resume)
    model, optimizer, generator, device = state.model, state.optimizer, state.generator, tensors.x_train.device
    running = _Running()
    z_val = x_hat = None
    model.train()
    tick = time.perf_counter()
    for iteration in range(state.iteration + 1, cfg.iterations + 1):
        idx = sampler.next_batch().to(device)
        terms = training_step(cfg, model, tensors.x_train[idx], tensors.y_train[idx], generator)
        loss = terms["loss"]
        if not math.isfinite(loss.item()):
            raise TrainingDiverged(f"the loss became {loss.item()} at iteration {iteration} "
                                   f"(lr={cfg.lr}, mu={cfg.mu}, margin={cfg.margin}); lower lr or margin.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.lr_schedule != "constant":
            set_lr(optimizer, lr_at(cfg, iteration))
        optimizer.step()
        running.add(terms)
        state.iteration = iteration
        if iteration % cfg.eval_every == 0 or iteration == cfg.iterations:
            state.train_seconds += time.perf_counter() - tick
            metrics, z_val, x_hat = evaluate(cfg, model, data, tensors)
            metrics = {"iteration": float(iteration), **metrics, **running.means(),
                       "train_seconds": state.train_seconds, "seconds": time.perf_counter() - started}
            state.history.append(metrics)
            if report is not None:
                report(metrics, state)
            tick = time.perf_counter()
    if z_val is None:  # resumed at the last iteration: nothing left to train
        _, z_val, x_hat = evaluate(cfg, model, data, tensors)
    return FitResult(state.history[-1], state.history, model, z_val, x_hat, time.perf_counter() - started)
