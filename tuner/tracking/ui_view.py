"""The view MLflow's UI opens through `tuner ui`: a saved view (`mlflow.sharedViewState.tuner`).

The format is MLflow's own, read from the UI source of MLflow 3.17 (mlflow/server/js/build):
an envelope {name, createdAt, updatedAt, state}, the state zlib-deflated and base64'd behind
"deflate;" (experiment tags hold 20,000 characters; the chart list alone passes that as JSON);
in the state, the run-table facets (orderByKey, orderByAsc) and the UI state keys
(selectedColumns, columnOrder, groupBy, runsHiddenMode, compareRunCharts, compareRunSections, ...).
A column is `params.`name`` / `metrics.`name``; a chart card is the UI's card class's fields.
`format_problems` checks an MLflow's UI bundle still holds all of it: a newer MLflow that
changed the format is caught by a test (and `tuner ui` says so), not by a silently plain view.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuner.tracking.tags import SEARCH_ID

UI_VIEW_KEY = "tuner"
VIEW_TAG = f"mlflow.sharedViewState.{UI_VIEW_KEY}"
GROUP_BY = {
    "aggregateFunction": "average",
    "groupByKeys": [{"mode": "tag", "groupByData": SEARCH_ID}],
}
MODEL_SECTION, SYSTEM_SECTION = "Model metrics", "System metrics"
EMBEDDING_KEY = "embedding"  # the image key trial runs log their embedding plot under, by step

# What this module writes, as the UI source spells it: each must still be in the bundle.
UI_FORMAT = {
    "UI state keys": (
        '"selectedColumns","columnOrder","columnWidths","runsExpanded","runsPinned","runsHidden",'
        '"runsVisibilityMap","runsHiddenMode","compareRunCharts","compareRunSections"'
    ),
    "UI state keys (2)": '"isAccordionReordered","groupBy","groupsExpanded","autoRefreshEnabled",'
    '"useGroupedValuesInCharts","hideEmptyCharts","globalLineChartConfig"',
    "table facets": '"searchFilter","orderByKey","orderByAsc"',
    "show all runs": 'SHOWALL="SHOW_ALL"',
    "column keys": 'e+".`"+t+"`"',
    "chart types": 'e.LINE="LINE",e.SCATTER="SCATTER",e.CONTOUR="CONTOUR",e.PARALLEL="PARALLEL"',
    "image chart": 'e.IMAGE="IMAGE"',
    "scatter card": (
        'this.type=c.SCATTER,this.xaxis={key:"",type:"METRIC"},this.yaxis={key:"",type:"METRIC"}'
    ),
    "parallel card": "this.type=c.PARALLEL,this.selectedParams=[],this.selectedMetrics=[]",
    "image card": "this.type=c.IMAGE,this.imageKeys=[],this.step=0",
    "line card": 'this.type=c.LINE,this.metricKey="",this.selectedMetricKeys=void 0',
    "sections": 'MODEL_METRICS="Model metrics",e.SYSTEM_METRICS="System metrics"',
    "compressed state": '"deflate;"',
    "saved-view envelope": (
        "Invalid saved-view envelope: expected an object with a string `name`, number "
        "`createdAt`, and string `state`"
    ),
}


def bundle_text(build_dir: Path | None = None) -> str:
    """The JavaScript of the installed MLflow's UI, joined."""
    if build_dir is None:  # found, not imported: importing mlflow.server starts its web app's setup
        import importlib.util

        build_dir = (
            Path(importlib.util.find_spec("mlflow").submodule_search_locations[0])
            / "server"
            / "js"
            / "build"
        )
    return "\n".join(
        p.read_text(errors="replace") for p in sorted(Path(build_dir).glob("static/js/*.js"))
    )


def format_problems(js: str) -> list[str]:
    """What of the format this module writes the UI code `js` no longer holds (empty: all of it)."""
    return [f"{what} ({text[:60]}...)" for what, text in UI_FORMAT.items() if text not in js]


def _column(kind: str, name: str) -> str:
    return f"{kind}.`{name}`"


def _card(uuid: str, kind: str, section: str, **fields: Any) -> dict[str, Any]:
    # The base card's fields (the UI's RunsChartsCardConfig), then the type's own.
    return {
        "uuid": uuid,
        "type": kind,
        "runsCountToCompare": 100,
        "metricSectionId": section,
        "deleted": False,
        "isGenerated": False,
        "displayName": None,
        **fields,
    }


def _line(uuid: str, metric: str, section: str, deleted: bool = False) -> dict[str, Any]:
    return _card(
        uuid,
        "LINE",
        section,
        metricKey=metric,
        selectedMetricKeys=[metric],
        displayName=metric,
        lineSmoothness=0,
        xAxisScaleType="linear",
        scaleType="linear",
        range={"xMin": None, "xMax": None, "yMin": None, "yMax": None},
        xAxisKey="step",
        selectedXAxisMetricKey="",
        yAxisKey="metric",
        yAxisExpressions=[],
        ignoreOutliers=False,
        useGlobalXaxisKey=True,
        useGlobalLineSmoothing=True,
        deleted=deleted,
    )


def view_metrics(metrics: Sequence[str]) -> list[str]:
    """The search's metrics, then knn_accuracy and recon_error: the first two are the trade-off."""
    return list(dict.fromkeys([*metrics, "knn_accuracy", "recon_error"]))


def view_state(
    settings: Sequence[str],
    metrics: Sequence[str],
    modes: Sequence[str],
    tested: Sequence[str],
    other_metrics: Sequence[str] = (),
    stepped: Sequence[str] = (),
) -> dict[str, Any]:
    """The runs table and chart view of a search that searched `settings` for `metrics`.

    Table: settings, metrics, then `tested` (test figures) as columns in that order, sorted by the
    first metric in its mode, runs grouped by search. Charts, in order: the first two metrics'
    scatter, parallel coordinates settings -> metrics, each metric's curve by iteration, the
    embedding images by step. `other_metrics` (baselines, best_*, importances, ...) get deleted
    cards: the UI would otherwise add a card for each, alphabetically among ours; MLflow's
    "Add chart" brings one back. `stepped`: which of them have a history (a line, not a bar).
    """
    shown = view_metrics(metrics)
    columns = [
        *(_column("params", s) for s in settings),
        *(_column("metrics", m) for m in shown),
        *(_column("metrics", t) for t in tested if t not in shown),
    ]
    model, system = "tuner-section-model", "tuner-section-system"
    charts = [
        _card(
            "tuner-scatter",
            "SCATTER",
            model,
            displayName=f"{shown[0]} vs {shown[1]}",
            xaxis={"key": shown[1], "type": "METRIC"},
            yaxis={"key": shown[0], "type": "METRIC"},
        ),
        _card(
            "tuner-parallel",
            "PARALLEL",
            model,
            displayName="searched settings -> metrics",
            selectedParams=list(settings),
            selectedMetrics=shown,
            showAllRuns=False,
        ),
        *(_line(f"tuner-line-{m}", m, model) for m in shown),
        _card(
            "tuner-image-embedding",
            "IMAGE",
            model,
            imageKeys=[EMBEDDING_KEY],
            step=0,
            showRunParams=True,
        ),
    ]
    for key in dict.fromkeys(other_metrics):
        if key not in shown:
            charts.append(
                _line(f"tuner-line-{key}", key, model, deleted=True)
                if key in stepped
                else _card(
                    f"tuner-bar-{key}", "BAR", model, metricKey=key, displayName=key, deleted=True
                )
            )
    sections = [
        {
            "uuid": uuid,
            "name": name,
            "display": True,
            "isReordered": False,
            "deleted": False,
            "isGenerated": True,
        }
        for uuid, name in ((model, MODEL_SECTION), (system, SYSTEM_SECTION))
    ]
    first_mode = modes[0] if modes else "max"
    return {
        "orderByKey": _column("metrics", shown[0]),
        "orderByAsc": first_mode == "min",
        "selectedColumns": columns,
        "columnOrder": columns,
        "groupBy": GROUP_BY,
        "runsHiddenMode": "SHOW_ALL",
        "useGroupedValuesInCharts": False,
        "hideEmptyCharts": True,
        "isAccordionReordered": False,
        "compareRunCharts": charts,
        "compareRunSections": sections,
        "globalLineChartConfig": {
            "xAxisKey": "step",
            "lineSmoothness": 0,
            "selectedXAxisMetricKey": "",
        },
    }


def envelope(state: dict[str, Any], created_ms: int | None = None) -> str:
    """The tag's value: MLflow's saved-view envelope around the deflated state."""
    now = int(time.time() * 1000)
    packed = "deflate;" + base64.b64encode(zlib.compress(json.dumps(state).encode())).decode()
    return json.dumps(
        {"name": UI_VIEW_KEY, "createdAt": created_ms or now, "updatedAt": now, "state": packed}
    )


def read_envelope(value: str) -> dict[str, Any]:
    """The state in a tag's value: an envelope, or a bare JSON state (tuner before the envelope)."""
    outer = json.loads(value)
    if isinstance(outer, dict) and isinstance(outer.get("state"), str):
        text = outer["state"]
        if text.startswith("deflate;"):
            text = zlib.decompress(base64.b64decode(text[len("deflate;") :])).decode()
        return json.loads(text)
    return outer


def write_view(client: Any, experiment_id: str, state: dict[str, Any]) -> None:
    """Sets the experiment's saved view; keeps the envelope's creation time."""
    tags = client.get_experiment(experiment_id).tags
    created = None
    try:
        created = json.loads(tags[VIEW_TAG]).get("createdAt") if VIEW_TAG in tags else None
    except (ValueError, AttributeError):
        pass
    client.set_experiment_tag(
        experiment_id, VIEW_TAG, envelope(state, created if isinstance(created, int) else None)
    )
