"""The optimizer and the learning rate of each step: pure PyTorch."""

from __future__ import annotations

import math

import torch

from tuner.trainer.config import TrialConfig
from tuner.trainer.models import AutoEncoder


def make_optimizer(cfg: TrialConfig, model: AutoEncoder) -> torch.optim.Optimizer:
    """Adam; AdamW with weight_decay > 0 (decoupled: Adam's own L2 term is scaled away by its step size).

    Fused on CUDA: one kernel for every parameter instead of several per step.
    """
    fused = next(model.parameters()).device.type == "cuda" or None
    if cfg.weight_decay > 0:
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=fused)


def lr_at(cfg: TrialConfig, iteration: int) -> float:
    """The learning rate of step `iteration` (1-based): a function of the step alone, so a resumed
    trial continues the schedule without saving it. cosine: from lr down towards 0 at the last step."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (iteration - 1) / cfg.iterations))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
