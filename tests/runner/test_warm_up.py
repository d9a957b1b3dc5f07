"""Model logging's one-time cost is paid while the search's last trials run
(runner/models_step.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.drivers import dynamo_imported_after
from tests.spaces import spec_of
from tuner.runner.models_step import ModelWarmUp


def _warm_up(tmp_path: Path, log_models: str = "best") -> ModelWarmUp:
    spec = spec_of(
        tmp_path,
        f"""
        name: warm
        search: grid
        log_models: {log_models}
        params:
          mu: {{grid: [0.2, 0.5, 0.8]}}
        """,
    )
    return ModelWarmUp(spec)


def _trials(*statuses: str) -> list:
    return [SimpleNamespace(status=s) for s in statuses]


def test_warm_up_starts_once_when_every_trial_has_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr("tuner.tracking.registry.warm_up_model_logging", lambda: calls.append(1))
    warm_up = _warm_up(tmp_path)
    # the third trial is not created yet
    warm_up.last_trials_running(_trials("TERMINATED", "RUNNING"))
    # created, waiting for a core
    warm_up.last_trials_running(_trials("TERMINATED", "RUNNING", "PENDING"))
    assert warm_up.thread is None
    warm_up.last_trials_running(_trials("TERMINATED", "TERMINATED", "RUNNING"))
    warm_up.last_trials_running(_trials("TERMINATED", "TERMINATED", "TERMINATED"))
    warm_up.wait()
    assert calls == [1]


def test_no_warm_up_when_no_model_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "tuner.tracking.registry.warm_up_model_logging", lambda: pytest.fail("warmed up")
    )
    warm_up = _warm_up(tmp_path, log_models="none")
    warm_up.last_trials_running(_trials("TERMINATED", "TERMINATED", "RUNNING"))
    assert warm_up.thread is None
    warm_up.wait()  # nothing to wait for


def test_a_failing_warm_up_is_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise RuntimeError("no export today")

    monkeypatch.setattr("tuner.tracking.registry.warm_up_model_logging", broken)
    warm_up = _warm_up(tmp_path)
    warm_up.last_trials_running(_trials("TERMINATED", "RUNNING", "RUNNING"))
    warm_up.wait()
    assert capsys.readouterr() == ("", "")


def test_the_warm_up_pays_torch_exports_import() -> None:
    """What it is for: torch.export's first call imports torch._dynamo, which a search's end then
    finds done."""
    assert dynamo_imported_after(
        "from tuner.tracking.registry import warm_up_model_logging", "warm_up_model_logging()"
    ) == [False, True]
