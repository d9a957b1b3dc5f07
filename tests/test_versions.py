"""The formats tuner shares with the installed MLflow and Ray Tune, checked against what is
installed: a new MLflow or Ray that moved one fails here, by name, rather than as an empty UI view
or a `tuner sync` that finds no trials. pyproject.toml bounds both below their next untested
minor."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tuner.tracking.reader import ui_url
from tuner.tracking.ui_view import GROUP_BY, UI_VIEW_KEY, VIEW_TAG, bundle_text, format_problems


def test_mlflow_ui_reads_the_view_state_tuner_writes() -> None:
    import mlflow

    ui = bundle_text()
    assert ui, f"the installed MLflow {mlflow.__version__} has no UI bundle"
    version = mlflow.__version__
    prefix = VIEW_TAG[: -len(UI_VIEW_KEY)]
    # The experiment tag the UI looks up by the link's viewStateShareKey (tracking/store.py,
    # reader.py).
    assert f'"{prefix}"' in ui, f"MLflow {version}'s UI no longer reads experiment tags {prefix}*"
    link = ui_url("sqlite:////nonexistent/mlflow.db", "127.0.0.1", 5000)
    assert "viewStateShareKey" not in link  # no store: the plain address; the key is checked below
    assert '"viewStateShareKey"' in ui, f"MLflow {version}'s UI no longer takes ?viewStateShareKey="
    # The saved view's shape: {groupBy: {aggregateFunction, groupByKeys: [{mode, groupByData}]}}.
    group_by = GROUP_BY
    for key in ("groupBy", "aggregateFunction", "groupByKeys"):
        assert re.search(rf"\b{key}\b", ui), f"MLflow {version}'s UI view state has no {key!r}"
    for entry in group_by["groupByKeys"]:
        assert set(entry) == {"mode", "groupByData"}
        assert re.search(r"mode:e,groupByData:n|\.mode===e&&\w\.groupByData===n", ui), (
            f"MLflow {version}'s group-by keys are no longer {{mode, groupByData}}"
        )
        assert f'.TAG="{entry["mode"]}"' in ui, (
            f"MLflow {version}'s UI has no group-by mode {entry['mode']!r}"
        )
    assert f'"{group_by["aggregateFunction"]}"' in ui
    # The run view the link asks for (reader.ui_url: workflowType=machine_learning).
    assert 'MACHINE_LEARNING="machine_learning"' in ui and '"workflowType"' in ui, (
        f"MLflow {version}'s UI no longer has the machine_learning workflow view"
    )
    # The saved view's columns, charts and envelope (tracking/ui_view.py).
    assert format_problems(ui) == [], f"MLflow {version}'s UI moved: {format_problems(ui)}"


@pytest.mark.slow
def test_tune_writes_the_layout_tuner_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real Tune run (two trials, one failing, checkpoints), read back by tuner's own readers."""
    import ray
    from ray import tune

    from tuner.runner.ray_cluster import init_local_ray
    from tuner.system.tune_storage import experiment_dir
    from tuner.tracking.sync import _TRIAL_ID, read_trials

    def trainable(config: dict) -> None:
        for step in (1, 2):
            ckpt_dir = tmp_path / f"c{config['x']}{step}"
            ckpt_dir.mkdir()
            (ckpt_dir / "plots").mkdir()
            tune.report(
                {"score": config["x"] * step}, checkpoint=tune.Checkpoint.from_directory(ckpt_dir)
            )
        if config["x"] == 2:
            raise ValueError("this trial fails")

    from ray.tune.logger import JsonLoggerCallback

    # As runner/tune_setup.py runs Tune: its JSON logger only; the trainable travels by value.
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    init_local_ray(num_cpus=2)
    try:
        tune.Tuner(
            trainable,
            param_space={"x": tune.grid_search([1, 2])},
            run_config=tune.RunConfig(
                name="layout", storage_path=str(tmp_path / "ray"), callbacks=[JsonLoggerCallback()]
            ),
        ).fit()
    finally:
        ray.shutdown()
    exp = tmp_path / "ray" / "layout"
    assert list(exp.glob("experiment_state-*.json")) and (exp / "tuner.pkl").is_file(), (
        "Tune's saved state (experiment_state-*.json, tuner.pkl) moved: "
        f"{sorted(p.name for p in exp.iterdir())}"
    )
    records = {
        r.config["x"]: r for r in read_trials(experiment_dir(str(tmp_path / "ray"), "layout"))
    }
    assert set(records) == {1, 2}, "tuner sync found no trials in Tune's directories (params.json)"
    for x, record in records.items():
        assert [r["training_iteration"] for r in record.results] == [1, 2], (
            "result.json lines moved"
        )
        assert {r["trial_id"] for r in record.results} == {record.trial_id}
        assert [r["score"] for r in record.results] == [x, 2 * x]
        trial_dir = next(p for p in exp.iterdir() if p.is_dir() and record.trial_id in p.name)
        found = _TRIAL_ID.search(trial_dir.name)
        assert found and found.group(1) == record.trial_id, (
            f"Tune's trial directory name moved: {trial_dir.name}"
        )
        assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == [
            "checkpoint_000000",
            "checkpoint_000001",
        ]
        assert record.plots is not None and record.plots.endswith("checkpoint_000001/plots")
    assert records[1].error is None and "this trial fails" in (records[2].error or ""), (
        "error.txt moved"
    )
