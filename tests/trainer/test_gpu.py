"""On a GPU: what the CPU suite cannot check. Skipped without CUDA (CI has none); run on a lent
GPU machine by benchmarks/gpu_check.sh, beside bench_gpu.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.trainer.test_miners import batch_and_embeddings
from tuner.core.config import TrialConfig
from tuner.data import load_features
from tuner.data.features import FeatureSet
from tuner.trainer.device import device_generator
from tuner.trainer.losses import contrastive_loss, triplet_loss
from tuner.trainer.miners import mine
from tuner.trainer.networks import build_model
from tuner.trainer.optim import make_optimizer
from tuner.trainer.samplers import StratifiedBatchSampler
from tuner.trainer.train import fit, training_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def digits() -> FeatureSet:
    return load_features(TrialConfig(), progress=False).without_test()


def test_a_gpu_trial_learns_as_the_cpu_trial_does(digits: FeatureSet) -> None:
    """Other batches (drawn by the GPU's generator), the same quality of training."""
    cfg = TrialConfig(
        encoder="vae", constraint="triplet", hidden_dims=(64, 32), iterations=300, eval_every=100
    )
    gpu, cpu = fit(cfg.replace(device="cuda"), digits), fit(cfg.replace(device="cpu"), digits)
    assert next(gpu.model.parameters()).is_cuda
    assert (
        gpu.metrics["knn_accuracy"] > 0.7
        and abs(gpu.metrics["knn_accuracy"] - cpu.metrics["knn_accuracy"]) < 0.1
    )
    assert gpu.metrics["recon_error"] == pytest.approx(cpu.metrics["recon_error"], rel=0.25)


@pytest.mark.parametrize(
    "constraint, encoder, mining, max_tuples",
    [
        ("pairwise", "ae", "all", None),
        ("triplet", "vae", "all", None),
        ("pairwise", "ae", "semihard", None),
        ("triplet", "ae", "semihard", 2000),
    ],
)
def test_training_steps_between_loss_checks_never_wait_for_the_gpu(
    digits: FeatureSet, constraint: str, encoder: str, mining: str, max_tuples: int | None
) -> None:
    """fit's loop body (batch, step, backward, Adam) under CUDA's sync debug mode: any host sync
    (an .item(), a nonzero(), a read-back) raises. The index sets are memoised by the host-side
    labels; semi-hard mining there is a mask over them (miners.py), capped in a fixed shape."""
    cfg = TrialConfig(
        constraint=constraint, encoder=encoder, mining=mining, max_tuples=max_tuples, device="cuda"
    )
    model = build_model(cfg, digits.n_features).to(CUDA)
    optimizer, generator = make_optimizer(cfg, model), device_generator(CUDA, cfg.seed)
    sampler = StratifiedBatchSampler(
        digits.y_train, cfg.batch_size, torch.Generator().manual_seed(0), CUDA, generator
    )
    x, y = torch.from_numpy(digits.x_train).to(CUDA), torch.from_numpy(digits.y_train).to(CUDA)

    def step() -> dict[str, torch.Tensor]:
        idx = sampler.next_batch()
        terms = training_step(cfg, model, x[idx], y[idx], generator, sampler.last_labels.tobytes())
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        return terms

    for _ in range(600):  # the mining memo fills (digits: 45 label sequences), kernels load
        step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        total = sum(step()["loss"].detach() for _ in range(30))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(total).item()


@pytest.mark.parametrize("constraint", ["pairwise", "triplet"])
def test_semihard_mining_on_the_gpu_is_masked_and_agrees_with_the_cpu(constraint: str) -> None:
    """On CUDA `mine` takes the masked form by itself; its loss equals the CPU's selected form's."""
    labels, z = batch_and_embeddings(0)
    loss = contrastive_loss if constraint == "pairwise" else triplet_loss
    values = []
    for device in ("cpu", "cuda"):
        zd, yd = z.to(device), labels.to(device)
        mined = mine(
            yd,
            zd,
            constraint,
            "semihard",
            1.0,
            None,
            torch.Generator(device).manual_seed(0),
            labels.numpy().tobytes(),
        )
        assert (mined.keep is not None) == (device == "cuda")
        values.append(loss(zd, *mined.tuples, 1.0, keep=mined.keep).item())
    assert values[1] == pytest.approx(values[0], rel=1e-4)


def test_a_compiled_gpu_trial_with_cuda_graphs_trains(digits: FeatureSet) -> None:
    cfg = TrialConfig(
        device="cuda", torch_compile="reduce-overhead", iterations=200, eval_every=100
    )
    result = fit(cfg, digits)
    assert result.metrics["knn_accuracy"] > 0.6 and result.history[0]["iteration"] == 100.0


@pytest.mark.slow
def test_four_trials_share_one_gpu(tmp_path: Path) -> None:
    """resources gpus 0.25: four trials at once on one GPU, each on CUDA (device auto follows
    Ray's assignment; a CUDA trial's checkpoint carries CUDA's RNG state)."""
    pytest.importorskip("ray", reason="a bare GPU image without Ray (benchmarks/gpu_check.sh)")
    from tuner.runner.search import run_search
    from tuner.space.load import load_spec

    space = tmp_path / "pack.yaml"
    space.write_text(
        "name: pack\nsearch: grid\nresources: {cpus: 1, gpus: 0.25}\nlog_models: none\n"
        "fixed: {hidden_dims: [32], iterations: 200, eval_every: 100}\n"
        "params:\n  seed: {grid: [0, 1, 2, 3]}\n"
    )
    table = run_search(
        load_spec(space),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        storage_path=tmp_path / "ray",
        verbose=False,
    ).trials
    assert list(table["status"]) == ["FINISHED"] * 4
    states = sorted((tmp_path / "ray" / "pack").glob("run_trial_*/checkpoint_*/train_state.pt"))
    last = {path.parts[-3]: path for path in states}  # each trial's last checkpoint
    assert len(last) == 4
    for path in last.values():
        assert "cuda_rng" in torch.load(path, map_location="cpu", weights_only=True)
