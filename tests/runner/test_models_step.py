"""Which trials' models a search logs and registers (log_models / register_as), without Ray."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.spaces import spec_of
from tuner.errors import TunerError
from tuner.runner.models_step import best_of, chosen_trials


def _spec(tmp_path: Path, extra: str, metric: str = "knn_accuracy"):
    return spec_of(
        tmp_path,
        f"""
        name: s
        metric: {metric}
        search: random
        {extra}
        params:
          mu: {{uniform: [0.1, 0.9]}}
        """,
    )


TABLE = pd.DataFrame(
    {
        "trial_id": ["a", "b", "c", "d"],
        "status": ["FINISHED", "KILLED", "FINISHED", "FINISHED"],
        "knn_accuracy": [0.9, 0.95, 0.8, 0.7],
        "recon_error": [0.5, 0.1, 0.2, 0.6],
    }
)


def test_best_all_none_and_the_pareto_front(tmp_path):
    assert chosen_trials(_spec(tmp_path, ""), TABLE) == ["a"]  # b is better but was stopped early
    assert chosen_trials(_spec(tmp_path, "log_models: all"), TABLE) == ["a", "c", "d"]
    assert chosen_trials(_spec(tmp_path, "log_models: none"), TABLE) == []
    multi = _spec(tmp_path, "", metric="[knn_accuracy, recon_error]")
    front = chosen_trials(multi, TABLE)
    assert front == ["a", "c"]  # d is dominated by a; b did not finish
    assert best_of(multi, TABLE, front) == "a"  # the first metric decides
    assert best_of(_spec(tmp_path, "", metric="recon_error"), TABLE, ["a", "c"]) == "c"


def test_register_as_defaults_to_the_search_name_and_is_checked(tmp_path):
    assert _spec(tmp_path, "").register_as == "s"
    assert _spec(tmp_path, "register_as: null").register_as is None
    assert _spec(tmp_path, "log_models: none").register_as is None
    with pytest.raises(TunerError, match=r"s.yaml:\d+: log_models: 'bset'.*did you mean 'best'"):
        _spec(tmp_path, "log_models: bset")
    with pytest.raises(TunerError, match="register_as: log_models: none logs no model"):
        _spec(tmp_path, "log_models: none\n        register_as: x")
    assert "log_models" not in _spec(tmp_path, "").resolved()  # --resume may change it


def test_a_failed_registration_keeps_the_logged_models_and_says_so(tmp_path, monkeypatch, capsys):
    """A name the registry refuses used to be reported as 'could not log the search's models',
    though the models were logged, and the logged ones were dropped from the result."""
    import types

    import tuner.tracking.registry as models
    from tuner.runner import models_step

    spec = _spec(tmp_path, "register_as: grid-v2")
    info = types.SimpleNamespace(run_id="r", model_uri="models:/m-1")
    monkeypatch.setattr(models_step, "_log_models", lambda *a, **k: {"a": info})

    def refuse(*args, **kwargs):
        raise ValueError("Invalid model name 'grid-v2'")

    monkeypatch.setattr(models, "register_model", refuse)
    tracker = types.SimpleNamespace(offline=False, client=None, search_id="s-1", parent_run_id="p")
    logged = models_step.log_search_models(spec, TABLE, [], {}, tracker, data=None, data_dir=None)
    assert logged == {"a": info}
    err = capsys.readouterr().err
    assert "the models are logged, but registering the chosen one as 'grid-v2' failed" in err
    assert "Invalid model name" in err and "could not log" not in err
