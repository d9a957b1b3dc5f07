"""Search efficiency of a multi-objective search: the quality of its front per trial-iteration.

    python -m benchmarks.bench_pareto [--json] [--configs 24] [--iterations 240] [--seeds 5]
                                      [--budget 0.25] [--data-dir DIR] [--only-mnist]

1. Reference: `--configs` configurations drawn once (seeded) from search_spaces/pareto.yaml's space
   (mu, latent_dim, margin, dropout, lr), each trained once to the full `--iterations` by one
   `tuner.search` (random, no stopping). Its front's hypervolume on validation is the reference
   (2-D: knn_accuracy up, recon_error down; reference point knn 0 and the worst recon_error seen
   in this run; tuner.core.objective.hypervolume_2d, checked against moocore when installed).
2. Under a budget of `--budget` x the reference's trial-iterations, `--seeds` searches each
   (searcher seeds 0..): random without stopping, random + moasha, Optuna multi-objective without
   stopping, Optuna + moasha. Each runs through `tuner.search`; a moasha search is given
   `--oversample` times the samples the budget would pay in full and is then cut at the budget: its
   trials are taken in the order they ended (MLflow end times), adding the iterations each reached,
   until the next one would pass the budget. The front is that prefix's finished trials. Per method:
   hypervolume ratio to the reference (median, min, max), wall seconds (to the end of the budget's
   last trial, and the whole search) and trial-iterations used.
3. tie_break_replay: the reference's learning curves (every evaluation from MLflow) replayed
   through the moasha rung rule (tuner.runner.rungs) in random arrival orders, once with crowding
   distance and once with an epsilon-net inside fronts: the median hypervolume ratio of the
   finished trials at the budget. No training: it isolates the tie-break.
4. With `--data-dir` (the MNIST split): mnist_d2.yaml and mnist_d2_moasha.yaml run in full, their
   walls' ratio (`mnist_d2_wall_ratio`), each chosen trial's test figures, and the hypervolume of
   each search's validation front against one reference point (`*_front_hv`); skipped otherwise.
   `--only-mnist` runs this part alone.

Keys: moasha_hv_ratio (the better moasha method's median; goal >= 0.95), no_stopping_hv_ratio (the
same searcher without moasha), mnist_d2_wall_ratio (goal <= 0.5). The load average is printed
before and after: other work on the machine slows the searches unevenly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import yaml
from mlflow.tracking import MlflowClient

from benchmarks.common import ROOT, Machine, add_json, emit_json, scratch
from tuner.core.objective import Objective, hypervolume_2d
from tuner.runner.rungs import RungBook
from tuner.runner.search import run_search
from tuner.space.load import load_spec

OBJ = Objective(("knn_accuracy", "recon_error"), ("max", "min"))
METHODS = {
    "random": ("random", False),
    "random_moasha": ("random", True),
    "optuna": ("optuna", False),
    "optuna_moasha": ("optuna", True),
}


def space_body(
    args: argparse.Namespace, name: str, search: str, samples: int, seed: int, moasha: bool
) -> dict[str, Any]:
    base = yaml.safe_load((ROOT / "search_spaces" / "pareto.yaml").read_text())
    body = {
        **base,
        "name": name,
        "search": search,
        "samples": samples,
        "seed": seed,
        "max_concurrent": 2,
        "log_models": "none",
        "register_as": None,
        "fixed": {**base["fixed"], "iterations": args.iterations, "eval_every": args.eval_every},
    }
    body["scheduler"] = (
        {"type": "moasha", "grace_period": args.eval_every, "reduction_factor": 3}
        if moasha
        else "none"
    )
    return body


def run(folder: Path, body: dict[str, Any], uri: str) -> tuple[pd.DataFrame, float, float]:
    path = folder / f"{body['name']}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    start = time.time()
    table = run_search(
        load_spec(path), tracking_uri=uri, storage_path=folder / "ray", verbose=False
    ).trials
    return table, start, time.time() - start


def trial_runs(uri: str, experiment: str) -> list[Any]:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [
        r
        for r in client.search_runs([exp.experiment_id], max_results=5000)
        if r.data.tags.get("tuner.role") == "trial"
    ]


def within_budget(
    uri: str, experiment: str, table: pd.DataFrame, budget: int
) -> tuple[list[dict[str, Any]], int, float]:
    """Trials in the order they ended (MLflow end times), while their iterations (the table's last
    `iteration`) fit the budget: (rows, used, end time of the last one)."""
    ended = {
        r.data.tags.get("tuner.trial_id"): (r.info.end_time or 0) / 1000
        for r in trial_runs(uri, experiment)
    }
    rows, used, end = [], 0, 0.0
    for row in sorted(table.to_dict("records"), key=lambda x: ended.get(x["trial_id"], np.inf)):
        its = int(row["iteration"]) if pd.notna(row["iteration"]) else 0
        if used + its > budget:
            break
        used, end = used + its, ended.get(row["trial_id"], end)
        rows.append({k: row[k] for k in ("status", "knn_accuracy", "recon_error")})
    return rows, used, end


def hv(rows: list[dict[str, Any]], worst_recon: float) -> float:
    finished = [r for r in rows if r.get("status", "FINISHED") == "FINISHED"]
    if not finished:
        return 0.0
    signed = OBJ.values(finished)
    return hypervolume_2d(signed[OBJ.pareto_mask(finished)], [0.0, -worst_recon])


def curves(uri: str, experiment: str) -> dict[str, list[tuple[int, dict[str, float]]]]:
    client = MlflowClient(tracking_uri=uri)
    out = {}
    for r in trial_runs(uri, experiment):
        hist = {
            m: {h.step: h.value for h in client.get_metric_history(r.info.run_id, m)}
            for m in OBJ.metric
        }
        steps = sorted(set(hist["knn_accuracy"]) & set(hist["recon_error"]))
        out[r.info.run_id] = [(s, {m: hist[m][s] for m in OBJ.metric}) for s in steps]
    return out


def replay(
    trials: dict[str, list[tuple[int, dict[str, float]]]],
    tie_break: str,
    iterations: int,
    eval_every: int,
    budget: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Two workers, trials in a random order, rungs deciding as moasha does; the finished trials
    whose iterations fit the budget (in the order they ended)."""
    objective = Objective(OBJ.metric, OBJ.mode, tie_break=tie_break)
    book = RungBook.new(objective, eval_every, iterations, 3)
    queue = list(rng.permutation(sorted(trials)))
    workers: list[tuple[float, str, int]] = []  # (clock, trial, index into its curve)
    clock, used, ended = 0.0, 0, []
    while (queue or workers) and used < budget:
        while queue and len(workers) < 2:
            workers.append((clock, queue.pop(), 0))
        workers.sort()
        clock, tid, i = workers.pop(0)
        step, metrics = trials[tid][i]
        clock += eval_every
        decision = book.on_result(tid, step, metrics)
        last = i + 1 == len(trials[tid])
        if decision == "STOP" or last:
            used += step
            if used <= budget:
                ended.append({"status": "FINISHED" if last else "KILLED", **metrics})
        else:
            workers.append((clock, tid, i + 1))
    return ended


def mnist_part(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fronts: dict[str, list[dict[str, Any]]] = {}
    for key, file in (("mnist_d2", "mnist_d2.yaml"), ("mnist_d2_moasha", "mnist_d2_moasha.yaml")):
        uri = f"sqlite:///{folder}/{key}.db"
        start = time.time()
        table = run_search(
            load_spec(ROOT / "search_spaces" / file),
            tracking_uri=uri,
            storage_path=folder / f"ray-{key}",
            data_dir=args.data_dir,
            verbose=False,
        ).trials
        out[f"{key}_wall_s"] = round(time.time() - start, 1)
        tested = (
            table.dropna(subset=["test_knn_accuracy"])
            if "test_knn_accuracy" in table
            else table.iloc[:0]
        )
        out[f"{key}_tested"] = (
            tested[
                [
                    "trial_id",
                    "status",
                    "knn_accuracy",
                    "recon_error",
                    "test_knn_accuracy",
                    "test_recon_error",
                ]
            ]
            .round(4)
            .to_dict("records")
        )
        out[f"{key}_stopped"] = int((table["status"] == "KILLED").sum())
        # The front each search found, on validation, from its finished trials.
        fronts[key] = table[["status", "knn_accuracy", "recon_error"]].to_dict("records")
    out["mnist_d2_wall_ratio"] = round(out["mnist_d2_moasha_wall_s"] / out["mnist_d2_wall_s"], 3)
    # "At least as good a front": both hypervolumes against one reference point (knn 0, the worst
    # recon_error either search finished with).
    worst = float(np.nanmax([r["recon_error"] for rows in fronts.values() for r in rows]))
    for key, rows in fronts.items():
        out[f"{key}_front_hv"] = round(hv(rows, worst), 5)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_json(parser)
    parser.add_argument("--configs", type=int, default=24, help="the reference pool")
    parser.add_argument("--iterations", type=int, default=240, help="each trial's full budget")
    parser.add_argument(
        "--eval-every", type=int, default=40, help="evaluations; moasha's first rung"
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--budget", type=float, default=0.25, help="share of the reference's trial-iterations"
    )
    parser.add_argument(
        "--oversample", type=float, default=2.5, help="moasha searches' samples x the budget's"
    )
    parser.add_argument("--replays", type=int, default=200)
    parser.add_argument("--data-dir", default=None, help="the MNIST split: runs the mnist_d2 part")
    parser.add_argument(
        "--only-mnist", action="store_true", help="with --data-dir: the mnist_d2 part alone"
    )
    args = parser.parse_args()
    if args.only_mnist and not args.data_dir:
        parser.error("--only-mnist needs --data-dir")
    machine = Machine()
    # address="local": a Ray of its own, never another one running on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    figures: dict[str, Any] = {
        "configs": args.configs,
        "iterations": args.iterations,
        "seeds": args.seeds,
        "budget_share": args.budget,
    }
    with scratch("bp-") as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        if args.only_mnist:
            figures = mnist_part(args, folder)
        else:
            figures.update(digits_part(args, folder, uri))
    figures.update(machine.done())
    ray.shutdown()
    if args.json:
        emit_json(figures)
    else:
        for k, v in figures.items():
            print(f"{k}: {v}")


def digits_part(args: argparse.Namespace, folder: Path, uri: str) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    ref_table, _, ref_wall = run(
        folder, space_body(args, "reference", "random", args.configs, 12345, False), uri
    )
    budget = int(args.budget * ref_table["iteration"].sum())
    full = max(1, budget // args.iterations)
    results: dict[str, list[tuple[list[dict[str, Any]], int, float, float]]] = {
        m: [] for m in METHODS
    }
    for seed in range(args.seeds):
        for method, (search, moasha) in METHODS.items():
            samples = int(round(full * args.oversample)) if moasha else full
            name = f"{method}-{seed}"
            table, start, wall = run(
                folder, space_body(args, name, search, samples, seed, moasha), uri
            )
            rows, used, end = within_budget(uri, name, table, budget)
            results[method].append((rows, used, end - start, wall))
    ref_rows = ref_table[["status", "knn_accuracy", "recon_error"]].to_dict("records")
    everything = ref_rows + [r for runs in results.values() for rows, *_ in runs for r in rows]
    worst = float(np.nanmax([r["recon_error"] for r in everything]))
    ref_hv = hv(ref_rows, worst)
    figures.update(
        reference_hv=round(ref_hv, 5),
        reference_wall_s=round(ref_wall, 1),
        reference_trial_iterations=int(ref_table["iteration"].sum()),
        budget_trial_iterations=budget,
        worst_recon_error=round(worst, 5),
    )
    try:
        import moocore

        signed = OBJ.values(ref_rows)
        front = signed[OBJ.pareto_mask(ref_rows)]
        figures["reference_hv_moocore"] = round(
            float(moocore.hypervolume(front, ref=[0.0, -worst], maximise=True)), 5
        )
    except ImportError:
        figures["reference_hv_moocore"] = None
    for method, runs in results.items():
        ratios = [hv(rows, worst) / ref_hv for rows, *_ in runs]
        figures[method] = {
            "hv_ratio_median": round(float(np.median(ratios)), 4),
            "hv_ratio_min": round(min(ratios), 4),
            "hv_ratio_max": round(max(ratios), 4),
            "wall_to_budget_s": round(float(np.median([r[2] for r in runs])), 1),
            "wall_s": round(float(np.median([r[3] for r in runs])), 1),
            "trial_iterations_median": int(np.median([r[1] for r in runs])),
            "stopped_within_budget_median": float(
                np.median([sum(x["status"] == "KILLED" for x in rows) for rows, *_ in runs])
            ),
        }
    best = max(("random_moasha", "optuna_moasha"), key=lambda m: figures[m]["hv_ratio_median"])
    figures.update(
        moasha_hv_ratio=figures[best]["hv_ratio_median"],
        moasha_method=best,
        no_stopping_hv_ratio=figures[best.removesuffix("_moasha")]["hv_ratio_median"],
    )
    ref_curves = curves(uri, "reference")
    for tie in ("crowding", "epsnet"):
        ratios = [
            hv(
                replay(
                    ref_curves,
                    tie,
                    args.iterations,
                    args.eval_every,
                    budget,
                    np.random.default_rng(k),
                ),
                worst,
            )
            / ref_hv
            for k in range(args.replays)
        ]
        figures[f"tie_break_replay_{tie}"] = {
            "hv_ratio_median": round(float(np.median(ratios)), 4),
            "hv_ratio_mean": round(float(np.mean(ratios)), 4),
        }
    figures.update(
        mnist_part(args, folder)
        if args.data_dir
        else {"mnist_d2_wall_ratio": "skipped (no --data-dir)"}
    )
    return figures


if __name__ == "__main__":
    sys.exit(main())
