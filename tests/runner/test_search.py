"""The search's own parts without Ray: checkpoint cadence, trial devices, the setup clock, and the
storage a search keeps its state in (a local path or a pyarrow URI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.spaces import write_space
from tuner.core.config import TrialConfig
from tuner.errors import TunerError
from tuner.runner.resume import init_storage
from tuner.runner.setup_clock import SetupClock
from tuner.runner.trial import should_checkpoint, trial_device
from tuner.space.load import load_spec
from tuner.system.tune_storage import STATE_FILE, delete_checkpoints, experiment_dir


def test_checkpoints_fall_on_every_nth_evaluation_but_not_the_last() -> None:
    cfg = TrialConfig(iterations=100, eval_every=20)
    assert [i for i in range(1, 101) if should_checkpoint(cfg, i, 1)] == [20, 40, 60, 80]
    assert [i for i in range(1, 101) if should_checkpoint(cfg, i, 2)] == [40, 80]


def test_a_quarter_gpu_per_trial_is_accepted_and_auto_follows_the_assignment(
    tmp_path: Path,
) -> None:
    spec = load_spec(
        write_space(tmp_path / "s.yaml", "name: s\nresources: {cpus: 1, gpus: 0.25}\n")
    )
    assert spec.gpus == 0.25  # four trials share one GPU
    auto = TrialConfig()
    assert trial_device(auto, ["0"]).device == "cuda"  # Ray's GPU ids for this trial
    assert trial_device(auto, []).device == "cpu"  # none given: not the machine's GPU
    assert trial_device(TrialConfig(device="cpu"), ["0"]).device == "cpu"


def test_setup_over_budget_is_reported_once_with_its_phases() -> None:
    over, within = SetupClock(budget_s=0.0), SetupClock(budget_s=1e9)
    for clock in (over, within):
        clock.lap("ray start")
        clock.lap("baselines")
    line = over.first_trial()
    assert line is not None and "setup took" in line and "ray start" in line and "tune" in line
    assert over.first_trial() is None  # the second trial's start says nothing
    assert within.first_trial() is None and within.total is not None


def test_a_new_search_moves_the_previous_one_aside(tmp_path: Path) -> None:
    spec = load_spec(write_space(tmp_path / "s.yaml", "name: s\n"))
    exp_dir = tmp_path / "ray" / "s"
    (exp_dir / "old_trial").mkdir(parents=True)
    init_storage(experiment_dir(tmp_path / "ray", "s"), "s-1234", spec, verbose=False)
    moved = [p for p in exp_dir.parent.iterdir() if p != exp_dir]
    assert len(moved) == 1 and moved[0].name.startswith("s-") and (moved[0] / "old_trial").is_dir()
    assert [p.name for p in exp_dir.iterdir()] == [STATE_FILE]
    assert json.loads((exp_dir / STATE_FILE).read_text())["search_id"] == "s-1234"


def test_a_storage_uri_is_read_and_written_through_pyarrow_not_as_a_local_path(
    tmp_path: Path,
) -> None:
    store = experiment_dir(f"file://{tmp_path}/bucket/", "my search")  # trailing slash, a space
    assert (store.uri, store.parent_path, store.name) == (
        f"file://{tmp_path}/bucket/my_search",
        f"{tmp_path}/bucket",
        "my_search",
    )
    assert store.read_text(STATE_FILE) is None and store.entries() == []
    store.write_text(STATE_FILE, '{"search_id": "x"}')
    assert (tmp_path / "bucket" / "my_search" / STATE_FILE).read_text() == '{"search_id": "x"}'
    (tmp_path / "bucket" / "my_search" / "run_trial_1" / "checkpoint_000000").mkdir(parents=True)
    delete_checkpoints(store.fs, store.child("run_trial_1"))
    assert sorted(p.name for p in (tmp_path / "bucket" / "my_search").rglob("*")) == [
        "run_trial_1",
        STATE_FILE,
    ]
    moved = store.move_aside()
    assert moved.startswith(f"file://{tmp_path}/bucket/my_search-") and store.entries() == []
    with pytest.raises(
        TunerError, match=r"--storage-path 'nosuch://x' cannot be opened.*s3://bucket"
    ):
        experiment_dir("nosuch://x", "s")
