"""The live progress line of a search: counts, the best so far, and its place in narrow
terminals."""

from __future__ import annotations

import io
from pathlib import Path

from tests.spaces import spec_of
from tuner.runner.console import SearchProgress
from tuner.space.load import load_spec


def _spec(tmp_path: Path, mode: str = "max"):
    return spec_of(
        tmp_path,
        f"""
        metric: recon_error
        mode: {mode}
        fixed: {{iterations: 40}}
        params:
          mu: {{grid: [0.25, 0.5, 0.75]}}
          latent_dim: {{grid: [2, 8]}}
        """,
    )


def _last_line(out: io.StringIO) -> str:
    return out.getvalue().split("\r")[-1].strip()


def test_counts_and_the_best_so_far_follow_the_trials(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = io.StringIO()
    progress = SearchProgress(_spec(tmp_path, mode="min"), file=out)
    progress.trial_started("a")
    progress.trial_started("b")
    progress.trial_result({"mu": 0.25, "latent_dim": 2}, {"recon_error": 0.05})
    progress.trial_result({"mu": 0.5, "latent_dim": 8}, {"recon_error": 0.02})
    progress.trial_result({"mu": 0.75, "latent_dim": 8}, {"recon_error": 0.09})  # worse: min mode
    progress.trial_result({"mu": 0.75, "latent_dim": 2}, {"recon_error": float("nan")})  # ignored
    progress.trial_ended("a", "KILLED")
    progress.trial_ended("a", "KILLED")  # a repeated end counts once
    progress.close()
    line = _last_line(out)
    assert line.startswith("1/6 trials")
    assert "done 0 | running 1 | pending 4 | stopped 1 | failed 0" in line
    assert "best recon_error 0.02 (mu=0.5 latent_dim=8)" in line


def test_a_narrow_terminal_keeps_the_counts_and_times(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("LINES", "0")  # a terminal reporting no rows must still show the line
    out = io.StringIO()
    progress = SearchProgress(_spec(tmp_path), file=out)
    progress.trial_started("a")
    progress.close()
    line = _last_line(out)
    assert line.startswith("0/6 trials") and "elapsed, ETA" in line and len(line) <= 60


def test_several_metrics_show_the_front_so_far_and_its_first(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "240")
    path = tmp_path / "m.yaml"
    path.write_text(
        "metric: [knn_accuracy, recon_error]\nscheduler: moasha\n"
        "fixed: {iterations: 40, eval_every: 10}\n"
        "params:\n  mu: {grid: [0.25, 0.5]}\n"
    )
    out = io.StringIO()
    progress = SearchProgress(load_spec(path), file=out)
    progress.trial_result({"mu": 0.25}, {"knn_accuracy": 0.9, "recon_error": 0.05})
    # a trade-off: both stay
    progress.trial_result({"mu": 0.5}, {"knn_accuracy": 0.8, "recon_error": 0.03})
    # dominated: dropped
    progress.trial_result({"mu": 0.5}, {"knn_accuracy": 0.7, "recon_error": 0.06})
    # ignored
    progress.trial_result({"mu": 0.25}, {"knn_accuracy": 0.95, "recon_error": float("nan")})
    progress.trial_ended("x", "KILLED")
    progress.close()
    line = _last_line(out)
    assert "stopped 1" in line
    assert "front 2: knn_accuracy 0.9 recon_error 0.05 (mu=0.25)" in line
    assert [f for f, _ in progress.pool] == [
        {"knn_accuracy": 0.9, "recon_error": 0.05},
        {"knn_accuracy": 0.8, "recon_error": 0.03},
    ]
