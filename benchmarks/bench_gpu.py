"""GPU benchmark: one trial's training steps/s on the CPU and on the GPU, and trials packed on one
GPU.

    python -m benchmarks.bench_gpu [--json] [--data-dir DIR] [--steps 2000]

On the MNIST split (raw pixels) and two networks: the default (784-256-128-2, batch 128) and the
prior work's (784-500-500-2000-10, batch 64). A trial's steps/s is iterations / train_seconds of
one fit() (evaluation excluded), after a short warm-up fit (CUDA context, kernels, the mining
memo). The CPU trial runs as a search runs it: one torch thread (resources.cpus 1).
(a) gpu_vs_cpu_trial: the prior work's network, GPU steps/s / CPU steps/s (goal >= 50); the
    default network's ratio beside it (gpu_vs_cpu_trial_default).
(b) packing: 1, 2, 4 and 8 trials of the prior work's network sharing one GPU through Ray Tune
    (resources gpus 1/n, cpus 1), all launched at once; aggregate steps/s is the sum of the
    trials' own steps/s. gpu_packing_speedup_4: four trials' aggregate / one trial's (goal >= 3).
    Where Ray is not installed (the lent GPU machines' image), the same trials run as plain
    processes on the GPU instead, started together after their warm-up: what Ray's fractional
    GPUs do physically (each trial a process with its own CUDA context), without the scheduler.
    Those figures carry the key gpu_packing_processes_*; gpu_packing_speedup_4 stays null.
(c) torch_compile: one trial's steps/s with the model compiled / eager, its compile included
    (after a warm-up fit, as in a reused worker): compile_speedup_cpu (default network, mode
    default, --steps iterations), compile_speedup_gpu_<mode> (prior work's network, modes default
    and reduce-overhead). The trainer's default (none: eager) stays until a mode measures faster.
Without CUDA the CPU figures are printed and the GPU keys are null. Sized to stay under
5 minutes on an H200 (Ray start and four small searches included).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.common import Machine, add_data_dir, add_json, emit_json, mnist_dir, skipped_text
from benchmarks.common.spawned import run_spawned
from tuner.core.config import TrialConfig
from tuner.data import load_features
from tuner.data.features import FeatureSet
from tuner.trainer.train import fit

NETWORKS = {
    "default": {},
    "prior_work": {"hidden_dims": [500, 500, 2000], "latent_dim": 10, "batch_size": 64},
}
PACKING = (1, 2, 4, 8)
GPU_COMPILE_MODES = ("default", "reduce-overhead")


def steps_per_second(
    net: dict[str, Any],
    device: str,
    steps: int,
    data: FeatureSet,
    after_warm_up: Callable[[], Any] = lambda: None,
) -> float:
    """One trial's training steps/s on `device`, after a warm-up fit of a tenth of the steps
    (then `after_warm_up`: packed trials wait there for each other)."""

    def run(iterations: int) -> float:
        cfg = TrialConfig.from_dict(
            {
                "dataset": "mnist",
                "device": device,
                **net,
                "iterations": iterations,
                "eval_every": iterations,
            },
            source="bench_gpu",
        )
        return iterations / fit(cfg, data).metrics["train_seconds"]

    run(max(20, steps // 10))
    after_warm_up()
    return run(steps)


def compile_speedups(
    eager_gpu: float | None, steps: int, data: FeatureSet
) -> dict[str, float | None]:
    """Compiled / eager steps/s of one trial: the default network on the CPU, the prior work's on
    the GPU (`eager_gpu`: (a)'s figure for it, the same fit; None without CUDA)."""
    eager_cpu = steps_per_second(NETWORKS["default"], "cpu", steps, data)
    out: dict[str, float | None] = {
        "compile_speedup_cpu": steps_per_second({"torch_compile": "default"}, "cpu", steps, data)
        / eager_cpu
    }
    print(
        f"(c) torch_compile on the CPU (default network): {out['compile_speedup_cpu']:.2f}x eager",
        flush=True,
    )
    for mode in GPU_COMPILE_MODES:
        key = f"compile_speedup_gpu_{mode.replace('-', '_')}"
        out[key] = (
            steps_per_second({**NETWORKS["prior_work"], "torch_compile": mode}, "cuda", steps, data)
            / eager_gpu
            if eager_gpu
            else None
        )
        print(
            f"    torch_compile {mode} on the GPU (prior work's network): "
            + (f"{out[key]:.2f}x eager" if out[key] else "-"),
            flush=True,
        )
    return out


def packed(n: int, steps: int, data_dir: Path, tmp: Path) -> float:
    """Aggregate steps/s of n prior-work trials sharing one GPU in one search (gpus 1/n each)."""
    from tuner.runner.search import run_search
    from tuner.space.load import load_spec

    path = tmp / f"pack{n}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": f"pack{n}",
                "search": "grid",
                "samples": 1,
                "scheduler": "none",
                "log_models": "none",
                "resources": {"cpus": 1, "gpus": 1 / n},
                "fixed": {
                    "dataset": "mnist",
                    **NETWORKS["prior_work"],
                    "iterations": steps,
                    "eval_every": steps,
                },
                "params": {"seed": {"grid": list(range(n))}},
            }
        )
    )
    table = run_search(
        load_spec(path),
        tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
        storage_path=tmp / "ray",
        data_dir=data_dir,
        verbose=False,
    ).trials
    if not (table["status"] == "FINISHED").all():
        raise SystemExit(f"packing {n}: trials did not finish: {table['status'].tolist()}")
    return float((table["iteration"] / table["train_seconds"]).sum())


def gpu_packing(steps: int, data_dir: Path) -> dict[int, float]:
    import ray

    ray.init(
        address="local",
        num_cpus=max(PACKING),
        num_gpus=1,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench_gpu_") as name:
            out = {}
            for n in PACKING:
                out[n] = packed(n, steps, data_dir, Path(name))
                print(
                    f"(b) {n} trial(s) on one GPU: aggregate {out[n]:.0f} steps/s "
                    f"({out[n] / out[1]:.2f}x one trial's)",
                    flush=True,
                )
            return out
    finally:
        ray.shutdown()


def _packed_process(
    net: dict[str, Any],
    device: str,
    steps: int,
    data_dir: Path,
    seed: int,
    ready: Any,
    results: Any,
) -> None:
    """One of n trials in plain processes: warm up, wait for the others, then time one fit."""
    torch.set_num_threads(1)
    data = load_features(
        TrialConfig(dataset="mnist"), data_dir=data_dir, progress=False
    ).without_test()
    results.put(
        steps_per_second(
            {**net, "seed": seed}, device, steps, data, lambda: ready.wait(timeout=600)
        )
    )


def process_packing(
    steps: int, data_dir: Path, device: str = "cuda", counts: tuple[int, ...] = PACKING
) -> dict[int, float]:
    """Aggregate steps/s (the sum of each trial's own) of n prior-work trials as n processes on one
    device."""
    out = {}
    for n in counts:
        rates = run_spawned(
            _packed_process,
            [(NETWORKS["prior_work"], device, steps, data_dir, seed) for seed in range(n)],
            f"packing {n}",
        )
        out[n] = sum(rates)
        print(
            f"(b) {n} trial process(es) on one {device}: aggregate {out[n]:.0f} steps/s "
            f"({out[n] / out[counts[0]]:.2f}x one's)",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_json(parser)
    add_data_dir(parser, "all figures")
    parser.add_argument(
        "--steps", type=int, default=2000, help="iterations of a measured GPU trial"
    )
    parser.add_argument(
        "--cpu-steps", type=int, default=300, help="iterations of a measured CPU trial"
    )
    args = parser.parse_args()
    if mnist_dir(args.data_dir) is None:
        print(skipped_text(args.data_dir))
        return
    machine = Machine()
    torch.set_num_threads(1)
    data = load_features(
        TrialConfig(dataset="mnist"), data_dir=args.data_dir, progress=False
    ).without_test()
    cuda = torch.cuda.is_available()
    figures: dict[str, Any] = {"gpu": None}
    for name, net in NETWORKS.items():
        cpu = steps_per_second(net, "cpu", args.cpu_steps, data)
        gpu = steps_per_second(net, "cuda", args.steps, data) if cuda else None
        figures[f"cpu_steps_per_s_{name}"], figures[f"gpu_steps_per_s_{name}"] = cpu, gpu
        ratio = gpu / cpu if gpu else None
        figures["gpu_vs_cpu_trial" if name == "prior_work" else "gpu_vs_cpu_trial_default"] = ratio
        print(
            f"(a) {name}: CPU (1 thread) {cpu:.0f} steps/s, GPU "
            + (f"{gpu:.0f} steps/s: {ratio:.1f}x" if gpu else "-"),
            flush=True,
        )
    figures |= compile_speedups(figures["gpu_steps_per_s_prior_work"], args.steps, data)
    if cuda:
        figures["gpu"] = torch.cuda.get_device_name(0)
    # a bare GPU image: processes stand in for Ray's trials
    if cuda and importlib.util.find_spec("ray") is None:
        pack = process_packing(args.steps, args.data_dir)
        figures |= {f"gpu_packing_processes_steps_per_s_{n}": v for n, v in pack.items()}
        figures |= {
            "gpu_packing_processes_speedup_4": pack[4] / pack[1],
            "gpu_packing_speedup_4": None,
        }
        print(
            f"(b) without Ray: gpu_packing_processes_speedup_4 = {pack[4] / pack[1]:.2f}x (goal >= "
            "3 through Ray Tune, which is not installed here)"
        )
    elif cuda:
        start = time.perf_counter()
        pack = gpu_packing(args.steps, args.data_dir)
        figures |= {f"gpu_packing_steps_per_s_{n}": v for n, v in pack.items()}
        figures["gpu_packing_speedup_4"] = pack[4] / pack[1]
        print(
            f"packing took {time.perf_counter() - start:.0f} s; gpu_vs_cpu_trial = "
            f"{figures['gpu_vs_cpu_trial']:.1f}x (goal >= 50), gpu_packing_speedup_4 = "
            f"{figures['gpu_packing_speedup_4']:.2f}x (goal >= 3)"
        )
    else:
        figures |= {"gpu_vs_cpu_trial": None, "gpu_packing_speedup_4": None}
        print(
            "no GPU found (torch.cuda.is_available() is False): gpu_vs_cpu_trial and "
            "gpu_packing_speedup_4 are null; the CPU figures above are this machine's"
        )
    figures |= machine.done()
    print(machine.line())
    if args.json:
        emit_json(figures)


if __name__ == "__main__":
    main()
