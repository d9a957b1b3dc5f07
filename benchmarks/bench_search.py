"""Search benchmark: three figures, each measured side by side in this one run.

    python -m benchmarks.bench_search [--json] [--trial-seconds 10] [--optuna-samples 16]

(a) scheduling_efficiency: fixed work / capacity used: the same 16 trials' fit() seconds when
    each runs alone (the loop of (b), this run) / (2 CPUs x search wall); ~10 s digits trials,
    1 CPU each. The wall is ray.init + the whole run_search call. (Trials' own seconds inside
    the search would count slower, core-sharing trials as more work.) Also printed: run_search
    alone, the first trial start -> last trial end span (MLflow run times), and each trial
    worker's peak private memory and RSS, and each trial worker's mean train_seconds beside the
    same fits' alone (diagnostics/search_cpu_share.py shows where the rest of the CPUs goes). Target
    >= 0.85.
(b) vs_sequential: a plain loop of fit() over the same 16 configs (features loaded once, torch
    threads 1), its wall / the search's wall of (a). Half the loop runs just before the search,
    half just after, so drifting machine load weighs on both sides. Target >= 1.85. Beside it, the
    machine's own ceiling: the same fits split over two bare processes (no Ray, no MLflow, no
    driver; imports and loading not timed), two_bare_processes_vs_sequential: what two trials
    sharing the cores cost before any orchestration; and with Ray's start added to that wall
    (ceiling_with_ray_start), the most a search that starts Ray could reach on this machine in
    this run, even with its trials as fast as bare processes.
(c) optuna_asha_grid_share: a full grid (mu x latent_dim x constraint, 400 iterations each)
    gives the best knn_accuracy and the total trial-iterations; Optuna + ASHA over the same
    values as choices (max_concurrent 2, seeded) is walked in trial completion order, adding
    the last iteration each trial reached, until a trial's final knn_accuracy is within 0.005
    of the grid's best; that sum / the grid's total. Target <= 0.25. Never reached: null, with
    `optuna_asha_reached` false and `optuna_asha_total_share` what it spent.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import ray
import torch
import yaml
from mlflow.tracking import MlflowClient

from benchmarks.common import Machine, add_json, emit_json
from benchmarks.common.spawned import run_spawned
from benchmarks.common.workers import WorkerMemory
from tuner.core.config import TrialConfig
from tuner.data import load_features
from tuner.data.features import FeatureSet
from tuner.runner.ray_cluster import init_local_ray
from tuner.runner.search import run_search
from tuner.space.load import load_spec
from tuner.space.spec import SearchSpec
from tuner.trainer.train import fit

CPUS = 2
FIXED = {
    "dataset": "digits",
    "feature_extractor": "raw",
    "encoder": "ae",
    "batch_size": 128,
    "hidden_dims": [256, 128],
    "lr": 0.001,
    "margin": 1.0,
    "dropout": 0.2,
    "seed": 0,
}
SCHED_GRID = {"mu": [0.2, 0.4, 0.6, 0.8], "latent_dim": [2, 4, 8, 16]}  # 16 pairwise trials
SPACE_C = {
    "mu": [0.2, 0.4, 0.6, 0.8],
    "latent_dim": [2, 4, 8],
    "constraint": ["pairwise", "triplet"],
}
ITERATIONS_C = 400
TOLERANCE = 0.005  # 0.5 points of knn_accuracy


def write_spec(folder: Path, name: str, body: dict[str, Any]) -> SearchSpec:
    path = folder / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "metric": "knn_accuracy",
                "mode": "max",
                "resources": {"cpus": 1, "gpus": 0},
                "seed": 0,
                **body,
            }
        )
    )
    return load_spec(path)


def grid_configs(spec: SearchSpec) -> list[TrialConfig]:
    names = list(spec.params)
    return [
        spec.trial_config(dict(zip(names, values)))
        for values in itertools.product(*(spec.params[n].values for n in names))
    ]


def size_iterations(trial_seconds: float) -> int:
    """Iterations for a ~trial_seconds pairwise trial, from one timed fit on this machine now."""
    cfg = TrialConfig.from_dict(
        {
            **FIXED,
            "constraint": "pairwise",
            "mu": 0.5,
            "latent_dim": 8,
            "iterations": 400,
            "eval_every": 400,
        },
        source="calibration",
    )
    seconds = fit(cfg, load_features(cfg, progress=False)).metrics["train_seconds"]
    return max(100, round(trial_seconds * cfg.iterations / seconds / 100) * 100)


def sequential(configs: list[TrialConfig], data: FeatureSet) -> tuple[float, float, list[float]]:
    """(wall, sum of each fit's own seconds: training and evaluations, each fit's train_seconds),
    alone, of one fit after another."""
    start = time.perf_counter()
    results = [fit(cfg, data) for cfg in configs]
    return (
        time.perf_counter() - start,
        sum(r.seconds for r in results),
        [r.metrics["train_seconds"] for r in results],
    )


def _fit_loop(configs: list[dict[str, Any]], ready: Any, walls: Any) -> None:
    """One of two bare processes: load, wait for the other, then fit one config after another."""
    torch.set_num_threads(1)
    cfgs = [TrialConfig.from_dict(c) for c in configs]
    data = load_features(cfgs[0], progress=False)
    ready.wait()  # both loaded: the two loops start together
    start = time.perf_counter()
    for cfg in cfgs:
        fit(cfg, data)
    walls.put(time.perf_counter() - start)


def two_processes(configs: list[TrialConfig]) -> float:
    """The wall of the configs' fits split over two bare processes (no Ray, MLflow or driver),
    imports and data loading excluded: what two trials at once cost on this machine."""
    halves = [[c.to_dict() for c in configs[i::2]] for i in range(2)]
    return max(run_spawned(_fit_loop, [(half,) for half in halves], "two bare processes"))


def timed_search(spec: SearchSpec, tmp: Path, uri: str) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    result = run_search(spec, tracking_uri=uri, storage_path=tmp / "ray_results", verbose=False)
    return result.trials, time.perf_counter() - start


def trial_runs(uri: str, experiment: str) -> pd.DataFrame:
    """One row per trial run: trial_id, start/end (s), (timestamp s, iteration = step) history; by
    end."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`tuner.role` = 'trial'", max_results=1000)
    rows = [
        {
            "trial_id": r.data.tags["tuner.trial_id"],
            "start": r.info.start_time / 1e3,
            "end": r.info.end_time / 1e3 if r.info.end_time else float("nan"),
            "history": [
                (m.timestamp / 1e3, float(m.step))
                for m in client.get_metric_history(r.info.run_id, "knn_accuracy")
            ],
        }
        for r in runs
    ]
    return pd.DataFrame(rows).sort_values("end", kind="stable").reset_index(drop=True)


def check_finished(
    table: pd.DataFrame, what: str, allowed: tuple[str, ...] = ("FINISHED",)
) -> None:
    if len(bad := table[~table["status"].isin(allowed)]):
        raise SystemExit(
            f"{what}: {len(bad)} trial(s) did not end as {allowed}: {bad['status'].tolist()}"
        )


def side_by_side(
    spec: SearchSpec, configs: list[TrialConfig], tmp: Path, uri: str
) -> tuple[pd.DataFrame, float, float, float, list[float], WorkerMemory]:
    """(search table, search seconds, sequential wall, sum of the fits' seconds alone, each fit's
    train_seconds alone, workers' memory).

    Half the loop runs before the search, half after: a drifting load weighs on both alike."""
    start = time.perf_counter()
    data = load_features(configs[0], progress=False)
    load_s = time.perf_counter() - start
    half = len(configs) // 2
    before = sequential(configs[:half], data)
    with WorkerMemory() as memory:
        table, search_s = timed_search(spec, tmp, uri)
    after = sequential(configs[half:], data)
    return (
        table,
        search_s,
        load_s + before[0] + after[0],
        before[1] + after[1],
        before[2] + after[2],
        memory,
    )


def train_seconds_by_worker(experiment_dir: Path) -> dict[int, list[float]]:
    """Trial worker pid -> its trials' train_seconds, from Tune's result.json files (Tune adds
    the pid to every result): who trained slower, when trials share the cores with the driver."""
    out: dict[int, list[float]] = {}
    for result_file in experiment_dir.glob("*/result.json"):
        lines = result_file.read_text().splitlines()
        if lines:
            last = json.loads(lines[-1])
            out.setdefault(int(last["pid"]), []).append(float(last["train_seconds"]))
    return out


def scheduling_spec(tmp: Path, name: str, trial_seconds: float) -> SearchSpec:
    """SCHED_GRID's 16 pairwise trials, each sized to last about `trial_seconds`."""
    iterations = size_iterations(trial_seconds)
    return write_spec(
        tmp,
        name,
        {
            "search": "grid",
            "samples": 1,
            "scheduler": "none",
            "fixed": {
                **FIXED,
                "constraint": "pairwise",
                "iterations": iterations,
                "eval_every": iterations // 4,
            },
            "params": {k: {"grid": v} for k, v in SCHED_GRID.items()},
        },
    )


def scheduling(tmp: Path, uri: str, trial_seconds: float, ray_init_s: float) -> dict[str, float]:
    spec = scheduling_spec(tmp, "bench-sched", trial_seconds)
    iterations = spec.base_config.iterations
    configs = grid_configs(spec)
    table, search_s, seq_wall, alone, alone_train, memory = side_by_side(spec, configs, tmp, uri)
    check_finished(table, "(a)")
    by_worker = train_seconds_by_worker(tmp / "ray_results" / spec.name)
    worker_means = sorted(sum(v) / len(v) for v in by_worker.values())
    alone_train_mean = sum(alone_train) / len(alone_train)
    runs = trial_runs(uri, spec.name)
    span = float(runs["end"].max() - runs["start"].min())
    in_flight = float((runs["end"] - runs["start"]).sum()) / span  # mean trials running at once
    wall = ray_init_s + search_s
    bare_wall = two_processes(configs)
    out = {
        "scheduling_efficiency": alone / (wall * CPUS),
        "scheduling_efficiency_run_search_only": alone / (search_s * CPUS),
        "scheduling_efficiency_trial_span": alone / (span * CPUS),
        "vs_sequential": seq_wall / wall,
        "vs_sequential_run_search_only": seq_wall / search_s,
        "two_bare_processes_vs_sequential": seq_wall / bare_wall,
        "two_bare_processes_efficiency": alone / (bare_wall * CPUS),
        "ceiling_with_ray_start": seq_wall / (bare_wall + ray_init_s),
        "trial_worker_peak_rss_mb": max(memory.peak_mb.values(), default=float("nan")),
        "trial_worker_peak_private_mb": max(memory.private_mb.values(), default=float("nan")),
        "trial_workers": len(memory.peak_mb),
        "train_seconds_alone_mean": alone_train_mean,
        "train_seconds_by_worker_mean": worker_means,
        "slowest_worker_train_slowdown": worker_means[-1] / alone_train_mean
        if worker_means
        else float("nan"),
    }
    print(
        f"(a) {len(table)} trials x {iterations} iterations on {CPUS} CPUs: the same fits alone "
        f"take {alone:.0f} s ({alone / len(configs):.1f} s a trial); in the search train_seconds "
        f"per trial mean {table['train_seconds'].mean():.1f} s (min "
        f"{table['train_seconds'].min():.1f}, max {table['train_seconds'].max():.1f}); search wall "
        f"{wall:.0f} s = ray.init {ray_init_s:.1f} s + run_search {search_s:.0f} s (first trial "
        f"start -> last trial end {span:.0f} s, {in_flight:.2f} trials running on average)"
    )
    print(
        f"    train_seconds a trial: alone {alone_train_mean:.2f} s; in the search, each trial "
        f"worker's mean {', '.join(f'{m:.2f}' for m in worker_means)} s ({len(by_worker)} workers; "
        f"the slowest {out['slowest_worker_train_slowdown']:.2f}x alone)"
    )
    print(
        f"    scheduling_efficiency = {out['scheduling_efficiency']:.3f} (target >= 0.85); "
        f"run_search only {out['scheduling_efficiency_run_search_only']:.3f}; trial span only "
        f"{out['scheduling_efficiency_trial_span']:.3f}"
    )
    print(
        f"    {len(memory.peak_mb)} trial worker process(es): private memory "
        f"{', '.join(f'{mb:.0f}' for mb in sorted(memory.private_mb.values())) or '-'} MB (target "
        "<= 600 MB); peak RSS "
        f"{', '.join(f'{mb:.0f}' for mb in sorted(memory.peak_mb.values())) or '-'} MB (shared "
        "libraries included)"
    )
    print(
        f"(b) sequential fit() loop (half the configs just before the search, half just after): "
        f"wall {seq_wall:.0f} s: vs_sequential = {out['vs_sequential']:.2f}x "
        f"(run_search only {out['vs_sequential_run_search_only']:.2f}x; target >= 1.85)"
    )
    print(
        "    the machine's own ceiling: the same fits split over two bare processes (no Ray, "
        f"MLflow or driver; imports and loading excluded) take {bare_wall:.0f} s: "
        f"{out['two_bare_processes_vs_sequential']:.2f}x the loop, efficiency "
        f"{out['two_bare_processes_efficiency']:.3f}; with ray.init's {ray_init_s:.1f} s added "
        f"{out['ceiling_with_ray_start']:.2f}x: what a search that starts Ray reaches at best here"
    )
    return out


def iterations_by(runs: pd.DataFrame, moment: float) -> float:
    """Iterations every trial had reported by `moment` (in-flight trials up to their last
    report)."""
    return float(sum(max((v for t, v in h if t <= moment), default=0.0) for h in runs["history"]))


def grid_reference(tmp: Path, uri: str, fixed: dict[str, Any]) -> tuple[float, float, int]:
    """(best knn_accuracy, total trial-iterations, trials within TOLERANCE of the best) of the full
    grid."""
    grid = write_spec(
        tmp,
        "bench-grid",
        {
            "search": "grid",
            "samples": 1,
            "scheduler": "none",
            "fixed": fixed,
            "params": {k: {"grid": v} for k, v in SPACE_C.items()},
        },
    )
    table, seconds = timed_search(grid, tmp, uri)
    check_finished(table, "(c) grid")
    best = float(table["knn_accuracy"].max())
    total = float(table["iteration"].sum())
    near = int((table["knn_accuracy"] >= best - TOLERANCE - 1e-9).sum())  # how easy the target is
    print(
        f"(c) grid: {len(table)} trials, best knn_accuracy {best:.4f} ({near} trials within "
        f"{TOLERANCE}), {total:.0f} trial-iterations, {seconds:.0f} s"
    )
    return best, total, near


def search_share(tmp: Path, uri: str, samples: int) -> dict[str, Any]:
    fixed = {**FIXED, "iterations": ITERATIONS_C, "eval_every": 100}
    best, grid_total, near = grid_reference(tmp, uri, fixed)
    optuna = write_spec(
        tmp,
        "bench-optuna",
        {
            "search": "optuna",
            "samples": samples,
            "max_concurrent": 2,
            "fixed": fixed,
            "scheduler": {
                "type": "asha",
                "grace_period": 100,
                "reduction_factor": 3,
                "brackets": 1,
            },
            "params": {k: {"choice": v} for k, v in SPACE_C.items()},
        },
    )
    table, seconds = timed_search(optuna, tmp, uri)
    check_finished(table, "(c) optuna", ("FINISHED", "KILLED"))
    # in completion order
    runs = trial_runs(uri, optuna.name).join(
        table.set_index("trial_id")[["knn_accuracy", "iteration"]], on="trial_id"
    )
    reached = runs.index[runs["knn_accuracy"] >= best - TOLERANCE - 1e-9]
    total = float(runs["iteration"].sum())
    out: dict[str, Any] = {
        "optuna_asha_reached": len(reached) > 0,
        "optuna_asha_total_share": total / grid_total,
        "grid_best_knn_accuracy": best,
        "grid_trials_within_tolerance": near,
        "optuna_best_knn_accuracy": float(runs["knn_accuracy"].max()),
    }
    print(
        f"    optuna+asha: {len(table)} trials ({(table['status'] == 'KILLED').sum()} stopped by "
        f"ASHA), best {out['optuna_best_knn_accuracy']:.4f}, {total:.0f} trial-iterations "
        f"({out['optuna_asha_total_share']:.1%} of the grid's), {seconds:.0f} s"
    )
    if not len(reached):
        out["optuna_asha_grid_share"] = None
        print(
            f"    not reached: no Optuna trial within {TOLERANCE} of {best:.4f}: "
            "optuna_asha_grid_share = null"
        )
        return out
    first = int(reached[0])
    spent = float(runs["iteration"].iloc[: first + 1].sum())
    in_flight = iterations_by(runs, float(runs["end"].iloc[first]))
    out.update(
        optuna_asha_grid_share=spent / grid_total,
        optuna_asha_grid_share_in_flight=in_flight / grid_total,
    )
    print(
        f"    trial {first + 1} to end ({runs['trial_id'].iloc[first]}, knn_accuracy "
        f"{runs['knn_accuracy'].iloc[first]:.4f}) is within {TOLERANCE}: {spent:.0f} iterations by "
        f"ended trials: optuna_asha_grid_share = {out['optuna_asha_grid_share']:.1%} (target <= "
        f"25%); with in-flight trials' iterations {out['optuna_asha_grid_share_in_flight']:.1%}"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_json(parser)
    parser.add_argument(
        "--trial-seconds", type=float, default=10.0, help="(a) training seconds a trial"
    )
    parser.add_argument("--optuna-samples", type=int, default=16, help="(c) trials Optuna proposes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    machine = Machine()
    with tempfile.TemporaryDirectory(prefix="bench_search_") as name:
        tmp = Path(name)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        start = time.perf_counter()
        # address="local": a new instance even when another Ray runs on this machine; run_search
        # then leaves this one alone, and ray.init's own seconds can be counted apart.
        init_local_ray(CPUS)  # as a search starts its own
        ray_init_s = time.perf_counter() - start
        try:
            figures = {
                **scheduling(tmp, uri, args.trial_seconds, ray_init_s),
                **search_share(tmp, uri, args.optuna_samples),
            }
        finally:
            ray.shutdown()
    figures.update(ray_init_seconds=ray_init_s, **machine.done())
    print(machine.line())
    if args.json:
        emit_json(figures)


if __name__ == "__main__":
    main()
