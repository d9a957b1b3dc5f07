"""A search interrupted before tuner/core and tuner/system existed resumes: Tune's state names the
classes' old modules, and the aliases let pickle find them (in a fresh interpreter, as a resume
starts one)."""

from __future__ import annotations

import pickle
import subprocess
import sys

from tuner.core.config import TrialConfig
from tuner.core.objective import Objective
from tuner.runner.moved_modules import MOVED
from tuner.system.tune_storage import experiment_dir

LOAD = """
import pickle, sys
from tuner.runner.moved_modules import alias_moved_modules
alias_moved_modules()
state = pickle.loads(sys.stdin.buffer.read())
print(type(state["objective"]).__module__, state["objective"].require["knn_accuracy"])
print(type(state["exp"]).__module__, state["exp"].uri)
print(type(state["cfg"]).__module__, state["cfg"].mu)
"""


def old_pickle(state: object) -> bytes:
    """`state` pickled as the code before the move pickled it: protocol 0 names each class's module
    as text ("ctuner.core.objective\\nObjective"), so the old names can be put back."""
    data = pickle.dumps(state, protocol=0)
    for old, new in MOVED.items():
        data = data.replace(f"c{new}\n".encode(), f"c{old}\n".encode())
    return data


def test_state_pickled_under_the_old_module_paths_loads() -> None:
    objective = Objective(("knn_accuracy", "recon_error"), ("max", "min"), {"knn_accuracy": 0.5})
    state = {
        "objective": objective,
        "exp": experiment_dir("/tmp/old-store", "exp1"),
        "cfg": TrialConfig(mu=0.25),
    }
    data = old_pickle(state)
    for old in ("tuner.objective", "tuner.storage", "tuner.trainer.config"):
        assert f"c{old}\n".encode() in data, old
    assert b"tuner.core." not in data and b"tuner.system." not in data
    done = subprocess.run(
        [sys.executable, "-c", LOAD], input=data, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split("\n")[:3] == [
        "tuner.core.objective 0.5",
        "tuner.system.tune_storage /tmp/old-store/exp1",
        "tuner.core.config 0.25",
    ]
