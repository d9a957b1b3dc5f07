"""Where modules lived before `tuner/core/` and `tuner/system/`: a search interrupted before the
move left Tune's state (tuner.pkl: scheduler, callbacks, run config) naming the old paths, and
`--resume` unpickles it. Each old path is made an alias of its new module, on the driver, just
before Tune reads that state. Trial workers get freshly pickled objects and need no alias.
"""

from __future__ import annotations

import importlib
import sys

# Old module path -> new one, for the modules whose classes Tune's state can hold.
MOVED = {
    "tuner.trainer.config": "tuner.core.config",
    "tuner.objective": "tuner.core.objective",
    "tuner.outcome": "tuner.core.selection",
    "tuner.rungs": "tuner.runner.rungs",
    "tuner.storage": "tuner.system.tune_storage",
    "tuner.storage_guard": "tuner.system.storage_guard",
    "tuner.trainer.models": "tuner.trainer.networks",
    "tuner.trainer.embedder": "tuner.embedding",
}


def alias_moved_modules() -> None:
    """Let pickle find a class under the path it was saved with (a module under its current name
    is never replaced)."""
    for old, new in MOVED.items():
        if old not in sys.modules:
            sys.modules[old] = importlib.import_module(new)
