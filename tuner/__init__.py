"""tuner: hyperparameter search for weakly-supervised metric embeddings."""

from __future__ import annotations

from typing import Any

from tuner.core.config import TrialConfig
from tuner.errors import TunerError

__all__ = [
    "SearchResult",
    "TrialConfig",
    "TunerError",
    "load_model",
    "load_spec",
    "run_experiment",
    "search",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # torch, Ray and MLflow load only when these are used: `import tuner` stays instant.
    if name == "run_experiment":
        from tuner.prior_work import run_experiment

        return run_experiment
    if name == "search":
        from tuner.runner.search import search

        return search
    if name == "load_spec":  # the search file, validated and resolved: what the error messages name
        from tuner.space.load import load_spec

        return load_spec
    if name == "SearchResult":  # what search returns
        from tuner.runner.result import SearchResult

        return SearchResult
    if name == "load_model":  # models:/name@champion, models:/name/3, runs:/..., or a run id
        from tuner.tracking.registry import load_model

        return load_model
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")
