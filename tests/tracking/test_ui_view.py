"""The saved view `tuner ui` opens: MLflow's own format, checked against the installed MLflow's
UI."""

from __future__ import annotations

import json
from pathlib import Path

from tuner.tracking.ui_view import bundle_text, envelope, format_problems, read_envelope, view_state


def test_the_installed_mlflow_ui_reads_every_part_of_the_view_tuner_writes() -> None:
    # Fails on an MLflow whose UI renamed a key, a chart type or the envelope: pin or follow it.
    assert format_problems(bundle_text()) == []


def test_an_unknown_future_format_is_named_not_ignored(tmp_path: Path) -> None:
    js = bundle_text()
    (tmp_path / "static" / "js").mkdir(parents=True)
    # A future UI that renamed its chart list and its parallel-coordinates card.
    future = js.replace('"compareRunCharts"', '"runsChartsState"').replace(
        "this.type=c.PARALLEL", "this.type=c.PCP"
    )
    (tmp_path / "static" / "js" / "main.js").write_text(future)
    problems = format_problems(bundle_text(tmp_path))
    assert [p.split(" (")[0] for p in problems] == ["UI state keys", "parallel card"]


def test_the_view_lists_settings_metrics_then_test_figures_and_curated_charts_first() -> None:
    state = view_state(
        ["mu", "latent_dim"],
        ["knn_accuracy"],
        ["max"],
        ["test_knn_accuracy", "test_recon_error"],
        other_metrics=["ami", "baseline_pca2_knn_accuracy", "loss", "knn_accuracy"],
        stepped=["ami", "loss", "knn_accuracy"],
    )
    assert state["selectedColumns"] == [
        "params.`mu`",
        "params.`latent_dim`",
        "metrics.`knn_accuracy`",
        "metrics.`recon_error`",
        "metrics.`test_knn_accuracy`",
        "metrics.`test_recon_error`",
    ]
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`knn_accuracy`", False)
    charts = state["compareRunCharts"]
    shown = [
        (c["type"], c.get("metricKey") or c.get("imageKeys")) for c in charts if not c["deleted"]
    ]
    assert shown == [
        ("SCATTER", None),
        ("PARALLEL", None),
        ("LINE", "knn_accuracy"),
        ("LINE", "recon_error"),
        ("IMAGE", ["embedding"]),
    ]
    assert (charts[0]["yaxis"]["key"], charts[0]["xaxis"]["key"]) == ("knn_accuracy", "recon_error")
    assert (charts[1]["selectedParams"], charts[1]["selectedMetrics"]) == (
        ["mu", "latent_dim"],
        ["knn_accuracy", "recon_error"],
    )
    # Every other metric has a card (deleted), so the UI adds none among the curated ones.
    hidden = {c["metricKey"]: c["type"] for c in charts if c["deleted"]}
    assert hidden == {"ami": "LINE", "loss": "LINE", "baseline_pca2_knn_accuracy": "BAR"}
    assert view_state(["mu"], ["recon_error"], ["min"], [])["orderByAsc"] is True


def test_the_envelope_round_trips_and_stays_under_mlflows_tag_limit() -> None:
    many = [f"baseline_pca{i}_knn_accuracy" for i in range(300)]
    state = view_state(
        ["mu", "latent_dim", "margin", "dropout"],
        ["knn_accuracy", "recon_error"],
        ["max", "min"],
        [],
        many,
        [],
    )
    value = envelope(state)
    outer = json.loads(value)
    assert outer["name"] == "tuner" and outer["state"].startswith("deflate;")
    assert read_envelope(value) == state
    assert len(value) < 20_000 < len(json.dumps(state))  # MAX_EXPERIMENT_TAG_VAL_LENGTH
    assert read_envelope(json.dumps({"groupBy": 1})) == {
        "groupBy": 1
    }  # a bare state, as tuner once wrote
