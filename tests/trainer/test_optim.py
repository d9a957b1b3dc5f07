"""FusedAdam: torch's fused Adam/AdamW kernel without torch.optim around it (see trainer/optim.py).

The reference is torch.optim itself, run side by side on the same gradients: a wrong kernel,
a step counted twice, a lost state or a learning rate not applied shows as a difference."""

from __future__ import annotations

import pytest
import torch

from tests.drivers import dynamo_imported_after
from tuner.trainer.optim import FusedAdam


def _twin_models(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    a = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    b = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    b.load_state_dict(a.state_dict())
    return a, b


def _train(
    model: torch.nn.Module, optimizer, steps: range, lrs: dict[int, float] | None = None
) -> None:
    for step in steps:
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(16, 7, generator=g), torch.randn(16, 3, generator=g)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x), y).backward()
        if lrs and step in lrs:
            for group in optimizer.param_groups:
                group["lr"] = lrs[step]
        optimizer.step()


@pytest.mark.parametrize("decay", [0.0, 0.3])
def test_matches_torch_optim_step_for_step(decay: float) -> None:
    ours, theirs = _twin_models()
    reference = (
        torch.optim.AdamW(theirs.parameters(), lr=0.05, weight_decay=decay, fused=True)
        if decay
        else torch.optim.Adam(theirs.parameters(), lr=0.05, fused=True)
    )
    fused = FusedAdam(ours.parameters(), lr=0.05, weight_decay=decay, decoupled=decay > 0)
    lrs = {10: 0.01, 20: 0.002}  # a schedule changes the learning rate between steps
    _train(ours, fused, range(30), lrs)
    _train(theirs, reference, range(30), lrs)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(p, q)
    moved = sum(
        float((p - q).detach().abs().sum())
        for p, q in zip(ours.parameters(), _twin_models()[0].parameters())
    )
    assert moved > 0.1  # it trained


def test_close_to_the_default_unfused_adam() -> None:
    """Checkpoints written before this class held torch.optim.Adam's (unfused) state: same maths."""
    ours, theirs = _twin_models()
    _train(ours, FusedAdam(ours.parameters(), lr=0.01), range(50))
    _train(theirs, torch.optim.Adam(theirs.parameters(), lr=0.01), range(50))
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(p, q, atol=1e-5)


def test_resumes_from_its_own_and_from_torch_optims_state() -> None:
    straight, _ = _twin_models()
    _train(straight, FusedAdam(straight.parameters(), lr=0.02), range(20))
    for first_half in (FusedAdam, lambda params, lr: torch.optim.Adam(params, lr=lr, fused=True)):
        model, _ = _twin_models()
        before = first_half(model.parameters(), lr=0.02)
        _train(model, before, range(10))
        saved = before.state_dict()
        resumed = FusedAdam(model.parameters(), lr=0.5)  # the saved learning rate wins
        resumed.load_state_dict(saved)
        assert resumed.param_groups[0]["lr"] == 0.02
        _train(model, resumed, range(10, 20))
        for p, q in zip(model.parameters(), straight.parameters()):
            assert torch.equal(p, q)
    # and torch.optim loads ours
    model, _ = _twin_models()
    ours = FusedAdam(model.parameters(), lr=0.02)
    _train(model, ours, range(10))
    theirs = torch.optim.Adam(model.parameters(), lr=0.02, fused=True)
    theirs.load_state_dict(ours.state_dict())
    _train(model, theirs, range(10, 20))
    for p, q in zip(model.parameters(), straight.parameters()):
        assert torch.equal(p, q)


def test_parameters_without_gradient_wait_and_a_wrong_state_is_refused() -> None:
    model, _ = _twin_models()
    frozen = model[2].weight.detach().clone()
    optimizer = FusedAdam(model.parameters(), lr=0.1)
    model(torch.randn(4, 7)).sum().backward()
    model[2].weight.grad = None
    optimizer.step()
    assert torch.equal(model[2].weight, frozen)
    assert sorted(optimizer.state) == [0, 1, 3]
    with pytest.raises(ValueError, match="holds 2 parameters, this model 4"):
        optimizer.load_state_dict(FusedAdam(model[0].parameters(), lr=0.1).state_dict())


def test_a_fit_never_imports_torch_dynamo() -> None:
    """The point of the class: torch.optim would import torch._dynamo in every trial worker."""
    assert dynamo_imported_after(
        "from tuner.core.config import TrialConfig\n"
        "from tuner.data import load_features\n"
        "from tuner.trainer.train import fit\n"
        "cfg = TrialConfig(iterations=4, eval_every=2, hidden_dims=(8,), weight_decay=0.1)\n"
        "fit(cfg, load_features(cfg, progress=False).without_test())"
    ) == [False]
