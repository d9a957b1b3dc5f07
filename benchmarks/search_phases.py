"""Where one small search's wall goes: run_search on 8 digits trials of ~5 s (2 CPUs), with
the wall and driver CPU of its phases (Ray start, the end's test read and model logging).

    python benchmarks/search_phases.py

The phases are timed by wrapping run_search's own steps; what is left of the wall is Tune's
(trial starts, the trials themselves, their checkpoints and reports).
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

import tuner.runner.search as search
from tuner.space.load import load_spec

PHASES = ("start_ray", "load_features", "make_tuner", "test_selected_safely", "log_search_models")
SPACE = {"name": "phases", "metric": "knn_accuracy", "mode": "max", "search": "grid", "scheduler": "none",
         "resources": {"cpus": 1, "gpus": 0},
         "fixed": {"dataset": "digits", "hidden_dims": [256, 128], "batch_size": 128, "iterations": 1300,
                   "eval_every": 325, "dropout": 0.2},
         "params": {"mu": {"grid": [0.2, 0.4, 0.6, 0.8]}, "latent_dim": {"grid": [2, 8]}}}


def timed(name: str, fn: Callable, spent: dict[str, tuple[float, float]]) -> Callable:
    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = (time.perf_counter() - wall, time.process_time() - cpu)
    return inner


def main() -> None:
    torch.set_num_threads(1)
    spent: dict[str, tuple[float, float]] = {}
    for name in PHASES:
        setattr(search, name, timed(name, getattr(search, name), spent))
    with tempfile.TemporaryDirectory(prefix="search_phases_") as name:
        tmp = Path(name)
        (tmp / "space.yaml").write_text(yaml.safe_dump(SPACE))
        wall, cpu = time.perf_counter(), time.process_time()
        search.run_search(load_spec(tmp / "space.yaml"), tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                          storage_path=tmp / "ray_results", verbose=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"run_search: wall {wall:.1f} s, driver CPU {cpu:.1f} s (every thread of the driver)")
    for name, (w, c) in spent.items():
        print(f"  {name:22s} wall {w:5.2f} s  cpu {c:5.2f} s")
    print(f"  {'the rest (Tune)':22s} wall {wall - sum(w for w, _ in spent.values()):5.2f} s")


if __name__ == "__main__":
    main()
