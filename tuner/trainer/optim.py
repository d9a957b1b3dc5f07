"""The optimizer and the learning rate of each step: pure PyTorch."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from tuner.core.config import TrialConfig
from tuner.trainer.networks import AutoEncoder

BETAS = (0.9, 0.999)
EPS = 1e-8


class FusedAdam:
    """Adam, or AdamW (decoupled weight decay), computed by torch's fused kernel: step for step
    what `torch.optim.Adam(fused=True)` / `AdamW(fused=True)` compute, on the CPU and on CUDA.

    Why not torch.optim itself: its constructor and every `step()` import torch._dynamo (about
    900 modules: ~1 s and 80-140 MB in every trial worker) and spend
    Python on wrappers a ~1 ms digits step feels. The kernel is the same. `state_dict()` has
    torch.optim's layout, so checkpoints load either way.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        self.params = list(params)
        self.decoupled = decoupled
        self.param_groups = [
            {
                "lr": float(lr),
                "betas": BETAS,
                "eps": EPS,
                "weight_decay": float(weight_decay),
                "amsgrad": False,
                "maximize": False,
                "foreach": None,
                "capturable": False,
                "differentiable": False,
                "fused": True,
                "decoupled_weight_decay": decoupled,
                "params": list(range(len(self.params))),
            }
        ]
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (as torch.optim: the others wait)."""
        group = self.param_groups[0]
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        for i in live:
            if i not in self.state:
                p = self.params[i]
                self.state[i] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
        states = [self.state[i] for i in live]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
        kernel(
            [self.params[i] for i in live],
            [self.params[i].grad for i in live],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            steps,
            lr=group["lr"],
            beta1=BETAS[0],
            beta2=BETAS[1],
            weight_decay=group["weight_decay"],
            eps=EPS,
            amsgrad=False,
            maximize=False,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "state": {i: dict(s) for i, s in self.state.items()},
            "param_groups": [dict(g) for g in self.param_groups],
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """This class's or torch.optim.Adam/AdamW's state_dict (any of their step layouts)."""
        group = saved["param_groups"][0]
        if len(group["params"]) != len(self.params):
            raise ValueError(
                f"the saved optimizer holds {len(group['params'])} parameters, this model "
                f"{len(self.params)}"
            )
        self.param_groups[0]["lr"] = float(group["lr"])
        self.state = {}
        for key, s in saved["state"].items():
            # torch.optim keys a parameter's state by its id in the group
            i = group["params"].index(key)
            p = self.params[i]
            self.state[i] = {
                "step": torch.as_tensor(s["step"], dtype=torch.float32).reshape(()).to(p.device),
                "exp_avg": s["exp_avg"].to(p.device, p.dtype),
                "exp_avg_sq": s["exp_avg_sq"].to(p.device, p.dtype),
            }


def make_optimizer(cfg: TrialConfig, model: AutoEncoder) -> FusedAdam:
    """Adam; AdamW with weight_decay > 0 (decoupled: Adam's own L2 term is scaled away by its step
    size)."""
    return FusedAdam(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, decoupled=cfg.weight_decay > 0
    )


def lr_at(cfg: TrialConfig, iteration: int) -> float:
    """The learning rate of step `iteration` (1-based): a function of the step alone, so a resumed
    trial continues the schedule without saving it. cosine: from lr down towards 0 at the last
    step."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (iteration - 1) / cfg.iterations))


def set_lr(optimizer: FusedAdam, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
