"""Where one small search's wall goes: run_search on 8 digits trials of ~5 s (2 CPUs), with
the wall of its phases (Ray start, data, Tune's set-up, the end's test read and model logging).

    python -m benchmarks.diagnostics.search_phases

The search runs under cProfile (wall-clock timer, the driver's main thread) and the phases are
read off the profile by the names of the functions run_search calls for them: nothing in tuner is
replaced. A phase whose function was renamed or not called prints as not seen. What is left of
the wall is Tune's (trial starts, the trials themselves, their checkpoints and reports). The
profiler slows the driver's own Python a little (Tune's loop runs in its main thread), not the
trials.
"""

from __future__ import annotations

import cProfile
import pstats

import torch
import yaml

from benchmarks.common import Machine, scratch, timed
from tuner.runner.search import run_search
from tuner.space.load import load_spec

PHASES = ("start_ray", "load_features", "make_tuner", "test_selected_safely", "log_search_models")
SPACE = {
    "name": "phases",
    "metric": "knn_accuracy",
    "mode": "max",
    "search": "grid",
    "scheduler": "none",
    "resources": {"cpus": 1, "gpus": 0},
    "fixed": {
        "dataset": "digits",
        "hidden_dims": [256, 128],
        "batch_size": 128,
        "iterations": 1300,
        "eval_every": 325,
        "dropout": 0.2,
    },
    "params": {"mu": {"grid": [0.2, 0.4, 0.6, 0.8]}, "latent_dim": {"grid": [2, 8]}},
}


def phase_seconds(profile: cProfile.Profile) -> dict[str, float | None]:
    """Cumulative wall seconds of each phase's function (None: not seen), from tuner's modules;
    of two functions of one name (one calling the other), the outer one."""
    found: dict[str, float | None] = dict.fromkeys(PHASES)
    for (path, _, name), (_, _, _, cumulative, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        if name in found and "tuner" in path:
            found[name] = max(found[name] or 0.0, cumulative)
    return found


def main() -> None:
    torch.set_num_threads(1)
    machine = Machine()
    profile = cProfile.Profile()  # its own C timer: wall-clock (perf counter), cheap per call
    with scratch("search_phases_") as tmp:
        (tmp / "space.yaml").write_text(yaml.safe_dump(SPACE))
        spec = load_spec(tmp / "space.yaml")
        whole: dict[str, tuple[float, float]] = {}
        with timed(whole, "run_search"):
            profile.runcall(
                run_search,
                spec,
                tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                storage_path=tmp / "ray_results",
                verbose=False,
            )
    wall, cpu = whole["run_search"]
    spent = phase_seconds(profile)
    print(f"run_search: wall {wall:.1f} s, driver CPU {cpu:.1f} s (every thread of the driver)")
    for name, seconds in spent.items():
        print(f"  {name:22s} " + (f"wall {seconds:5.2f} s" if seconds is not None else "not seen"))
    rest = wall - sum(s for s in spent.values() if s is not None)
    print(f"  {'the rest (Tune)':22s} wall {rest:5.2f} s")
    machine.done()
    print(machine.line())


if __name__ == "__main__":
    main()
