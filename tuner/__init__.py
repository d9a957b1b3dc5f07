"""tuner: hyperparameter search for weakly-supervised metric embeddings."""

from __future__ import annotations

from typing import Any

from tuner.trainer.config import TrialConfig
from tuner.errors import TunerError

__all__ = ["TrialConfig", "TunerError", "run_experiment", "search"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # torch, Ray and MLflow load only when these are used: `import tuner` stays instant.
    if name == "run_experiment":
        from tuner.experiment import run_experiment
        return run_experiment
    if name == "search":
        from tuner.runner.search import search
        return search
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")
