"""Trainer benchmark: three ratios, each measured side by side in this one run.

    python -m benchmarks.bench_trainer [--json] [--data-dir DIR]

(a) trainer_vs_bare: fit()'s training steps/s / a bare PyTorch loop of the same model,
    batch sampler, loss and optimizer (no evaluation, bookkeeping or checks). Target >= 0.95.
    Beside it, fused_adam_speedup: that bare loop's steps/s with the trainer's FusedAdam / with
    torch.optim.Adam (what it replaced: the same maths, see tuner/trainer/optim.py).
(b) mining_speedup: the prior work's plain Python-loop enumeration of the pairs and triplets
    of 64-sample, 10-class batches / the vectorized build of the same sets, unmemoized (every
    batch built from scratch, as for labels never seen before). Target >= 100x. Beside it, the
    memo's own gain (mining_memo_gain): the unmemoized build / the trainer's memoized one
    over 3,000 stratified batches (their label sequences repeat).
(b2) batch_all_triplet_speedup: a digits triplet trial's training seconds with every triplet of
    each batch enumerated (memoized) and gathered one by one, what the trainer did / with their
    loss summed without enumerating them (a sort per anchor), what it does now.
(c) cache_speedup: HOG features of the MNIST split, first extraction / cached load
    (target >= 50x); hog_parallel_speedup: extraction on 1 worker / on 2 workers. Needs
    --data-dir (MNIST in torchvision's layout); skipped without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Machine, add_data_dir, add_json, emit_json, mnist_dir, skipped_text
from benchmarks.mining_reference import python_loop_pairs, python_loop_triplets
from tuner.core.config import TrialConfig
from tuner.data import hog_features, load_features
from tuner.trainer.losses import reconstruction_loss, total_loss

# enumerate_*: the unmemoised builds, what the trainer pays for a label sequence it has not seen;
# all_pairs / all_triplets are the memoised ones it calls (triplets only under a cap or semi-hard
# masks: every triplet's loss is summed without them, part (b2)).
from tuner.trainer.miners import all_pairs, all_triplets, enumerate_pairs, enumerate_triplets
from tuner.trainer.networks import build_model
from tuner.trainer.optim import make_optimizer
from tuner.trainer.samplers import StratifiedBatchSampler
from tuner.trainer.train import fit, metric_loss


def bare_loop_seconds(
    cfg: TrialConfig, x: torch.Tensor, y: torch.Tensor, torch_optim: bool = False
) -> float:
    """The same model, sampler, loss and optimizer as fit(), with nothing else around it;
    `torch_optim`: with torch.optim.Adam instead of the trainer's FusedAdam."""
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg, x.shape[1])
    optimizer = (
        torch.optim.Adam(model.parameters(), lr=cfg.lr)
        if torch_optim
        else make_optimizer(cfg, model)
    )
    sampler = StratifiedBatchSampler(y.numpy(), cfg.batch_size, generator)
    model.train()
    start = time.perf_counter()
    for _ in range(cfg.iterations):
        idx = sampler.next_batch()
        xb, yb = x[idx], y[idx]
        out = model(xb)
        loss = total_loss(
            metric_loss(cfg, out.embedding, yb, generator),
            reconstruction_loss(out.x_hat, xb),
            None,
            cfg.mu,
            cfg.beta,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def trainer_vs_bare(rounds: int = 5) -> tuple[float, float]:
    cfg = TrialConfig(iterations=400, eval_every=400, mu=0.5)
    data = load_features(cfg, progress=False)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    bare, ours, torch_optim = [], [], []
    for _ in range(rounds):  # interleaved, so all three see the same machine load
        bare.append(bare_loop_seconds(cfg, x, y))
        ours.append(fit(cfg, data).metrics["train_seconds"])
        torch_optim.append(bare_loop_seconds(cfg, x, y, torch_optim=True))
    ratio = statistics.median(bare) / statistics.median(ours)
    fused = statistics.median(torch_optim) / statistics.median(bare)
    print(
        f"(a) trainer {cfg.iterations / statistics.median(ours):.0f} steps/s, bare loop "
        f"{cfg.iterations / statistics.median(bare):.0f} steps/s: trainer_vs_bare = {ratio:.3f} "
        "(target >= 0.95); the bare loop with torch.optim.Adam "
        f"{cfg.iterations / statistics.median(torch_optim):.0f} steps/s: fused_adam_speedup = "
        f"{fused:.2f}x"
    )
    return ratio, fused


def _per_batch(function, batches) -> float:
    start = time.perf_counter()
    for labels in batches:
        function(labels)
    return (time.perf_counter() - start) / len(batches)


def mining_speedup(n_batches: int = 3000) -> tuple[float, float]:
    labels = np.repeat(np.arange(10), 800)
    sampler = StratifiedBatchSampler(labels, 64, torch.Generator().manual_seed(0))
    batches = [torch.from_numpy(labels)[sampler.next_batch()] for _ in range(n_batches)]
    as_lists = [b.tolist() for b in batches[:100]]

    def loop(labels_list):
        return torch.tensor(python_loop_pairs(labels_list)), torch.tensor(
            python_loop_triplets(labels_list)
        )

    t_loop = _per_batch(loop, as_lists)
    t_cold = _per_batch(lambda b: (enumerate_pairs(b), enumerate_triplets(b)), batches[:500])
    t_trainer = _per_batch(lambda b: (all_pairs(b), all_triplets(b)), batches)  # memo starts empty
    print(
        f"(b) pairs+triplets of a 64-sample 10-class batch: python loop {t_loop * 1e6:.0f} us, "
        f"vectorized {t_cold * 1e6:.0f} us: mining_speedup = {t_loop / t_cold:.0f}x (target >= "
        f"100x); memoized by label sequence as the trainer builds them over {n_batches} batches "
        f"{t_trainer * 1e6:.1f} us: mining_memo_gain = {t_cold / t_trainer:.1f}x "
        f"({t_loop / t_trainer:.0f}x the loop)"
    )
    return t_loop / t_cold, t_cold / t_trainer


def batch_all_triplet_speedup(rounds: int = 3) -> float:
    cfg = TrialConfig(constraint="triplet", latent_dim=8, iterations=400, eval_every=400)
    data = load_features(cfg, progress=False)
    # A cap above any batch's count keeps every triplet but takes the enumerating path.
    enumerating = dataclasses.replace(cfg, max_tuples=10**9)
    timings: dict[str, list[float]] = {"enumerated": [], "summed": []}
    for _ in range(rounds):  # interleaved against drifting load
        timings["enumerated"].append(fit(enumerating, data).metrics["train_seconds"])
        timings["summed"].append(fit(cfg, data).metrics["train_seconds"])
    t_enum, t_sum = (statistics.median(timings[k]) for k in ("enumerated", "summed"))
    print(
        f"(b2) a digits triplet trial's {cfg.iterations} training steps (batch 128, latent 8): "
        f"every triplet enumerated {t_enum:.2f} s, summed without enumerating {t_sum:.2f} s: "
        f"batch_all_triplet_speedup = {t_enum / t_sum:.2f}x"
    )
    return t_enum / t_sum


def feature_speedups(data_dir: Path | None) -> tuple[float | None, float | None]:
    if (mnist := mnist_dir(data_dir)) is None:
        print(f"(c) {skipped_text(data_dir)}")
        return None, None
    cfg = TrialConfig(dataset="mnist", feature_extractor="hog")
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        first = load_features(cfg, data_dir=mnist, cache_dir=cache, progress=False)
        t_first = time.perf_counter() - start
        t_cached = float("inf")
        for _ in range(3):  # a cache hit is tens of ms: keep the best of a few against noise
            start = time.perf_counter()
            again = load_features(cfg, data_dir=mnist, cache_dir=cache, progress=False)
            t_cached = min(t_cached, time.perf_counter() - start)
    assert np.array_equal(first.x_train, again.x_train)
    images = np.concatenate([_mnist_images(mnist, train) for train in (True, False)])
    timings = {}
    for workers in (1, 2, 1, 2):  # interleaved against drifting load; keep the best of each
        start = time.perf_counter()
        hog_features(images, workers=workers)
        timings[workers] = min(timings.get(workers, float("inf")), time.perf_counter() - start)
    print(
        f"(c) HOG on the MNIST split ({len(images)} images): first load_features {t_first:.1f} s, "
        f"cached {t_cached:.3f} s: cache_speedup = {t_first / t_cached:.0f}x (target >= 50x); "
        f"1 worker {timings[1]:.1f} s, 2 workers {timings[2]:.1f} s: hog_parallel_speedup = "
        f"{timings[1] / timings[2]:.2f}x"
    )
    return t_first / t_cached, timings[1] / timings[2]


def _mnist_images(root: Path, train: bool) -> np.ndarray:
    import torchvision

    return torchvision.datasets.MNIST(str(root), train=train).data.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_json(parser)
    add_data_dir(parser, "(c)")
    args = parser.parse_args()
    machine = Machine()
    torch.set_num_threads(1)
    a, a_fused = trainer_vs_bare()
    b, b_memo = mining_speedup()
    b2 = batch_all_triplet_speedup()
    c, c_parallel = feature_speedups(args.data_dir)
    figures = {
        "trainer_vs_bare": a,
        "fused_adam_speedup": a_fused,
        "mining_speedup": b,
        "mining_memo_gain": b_memo,
        "batch_all_triplet_speedup": b2,
        "cache_speedup": c,
        "hog_parallel_speedup": c_parallel,
        **machine.done(),
    }
    print(machine.line())
    if args.json:
        emit_json(figures)


if __name__ == "__main__":
    main()
