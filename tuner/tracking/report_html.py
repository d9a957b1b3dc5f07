"""A search's report as one self-contained HTML page: summary table, the interactive front,
the importances and the plots. Pure (no Ray, no MLflow): plotly draws the interactive parts,
with its JavaScript inline, so the page opens offline and inside MLflow's artifact viewer."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence

import pandas as pd

from tuner.core.importance import Importances
from tuner.core.selection import pareto_mask

FRONT_ID, OTHERS_ID = "front", "others"  # the two point traces of the front plot, by name


def _hover(row: pd.Series, settings: Sequence[str], run_names: Mapping[str, str]) -> str:
    name = run_names.get(str(row.get("trial_id")), str(row.get("trial_id")))
    return "<br>".join(
        [
            f"<b>{html.escape(name)}</b>",
            f"trial {html.escape(str(row.get('trial_id')))}",
            *(f"{html.escape(s)} = {html.escape(str(row[s]))}" for s in settings if s in row),
        ]
    )


def front_figure(
    table: pd.DataFrame,
    metrics: Sequence[str],
    modes: Sequence[str],
    settings: Sequence[str],
    run_names: Mapping[str, str],
):
    """The first two metrics of the finished trials; the front (non-dominated) in its own trace:
    a multi-objective search's own (its table's `pareto` column, over all its metrics and repeats'
    means, as its summary shows it), else the plotted pair's."""
    import plotly.graph_objects as go

    x, y = metrics[1], metrics[0]
    done = table[(table["status"] == "FINISHED") if "status" in table else slice(None)].dropna(
        subset=[x, y]
    )
    if "pareto" in done:
        on_front = done["pareto"].fillna(False).astype(bool).to_numpy() if len(done) else []
    else:
        on_front = (
            pareto_mask(done[[y, x]].to_numpy(float), [modes[0], modes[1]]) if len(done) else []
        )
    fig = go.Figure()
    for name, rows, style in (
        (OTHERS_ID, done[~on_front] if len(done) else done, dict(color="#9aa7b8", size=8)),
        (FRONT_ID, done[on_front] if len(done) else done, dict(color="#d62728", size=11)),
    ):
        fig.add_trace(
            go.Scatter(
                x=rows[x],
                y=rows[y],
                mode="markers",
                name=name,
                marker=style,
                text=[_hover(r, settings, run_names) for _, r in rows.iterrows()],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig.update_layout(
        title=f"{y} ({modes[0]}) vs {x} ({modes[1]}): {int(sum(on_front))} trials on the front",
        xaxis_title=x,
        yaxis_title=y,
        height=480,
        margin=dict(l=60, r=20, t=60, b=50),
    )
    return fig


def importance_figure(imp: Importances):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(imp.shares), subplot_titles=list(imp.shares))
    for col, shares in enumerate(imp.shares.values(), start=1):
        names = list(shares)[::-1]
        fig.add_trace(
            go.Bar(x=[shares[n] for n in names], y=names, orientation="h", showlegend=False), 1, col
        )
    fig.update_layout(
        title=f"share of each metric's variance (fANOVA, {imp.trials} finished trials)",
        height=120 + 40 * max(len(s) for s in imp.shares.values()),
    )
    return fig


def report_page(
    title: str,
    table: pd.DataFrame,
    metrics: Sequence[str],
    modes: Sequence[str],
    settings: Sequence[str],
    imp: Importances,
    run_names: Mapping[str, str],
    images: Mapping[str, bytes] | None = None,
) -> str:
    """The page's HTML. `metrics`/`modes`: at least two (the front's axes); `images`: PNGs by
    caption."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    cols = [
        c
        for c in ("trial_id", "status", *settings, *metrics, *(f"test_{m}" for m in metrics))
        if c in table
    ]
    shown = table[list(dict.fromkeys(cols))].copy()
    shown.insert(1, "run", [run_names.get(str(t), "") for t in shown["trial_id"]])
    parts += [
        "<h2>Trials, best first</h2>",
        shown.to_html(index=False, float_format="{:.4g}".format, classes="summary", border=0),
    ]
    include = True  # plotly.js once, inline: no CDN (the page must open offline)
    if len(metrics) >= 2 and set(metrics[:2]) <= set(table.columns):
        parts += [
            "<h2>The front</h2>",
            front_figure(table, metrics, modes, settings, run_names).to_html(
                full_html=False, include_plotlyjs=include, div_id="front-plot"
            ),
        ]
        include = False
    parts.append("<h2>Which settings matter</h2>")
    if imp.shares:
        parts.append(
            importance_figure(imp).to_html(
                full_html=False, include_plotlyjs=include, div_id="importance-plot"
            )
        )
    parts.append("<pre class='importances'>" + html.escape("\n".join(imp.lines())) + "</pre>")
    if images:
        parts.append("<h2>Plots</h2>")
    for caption, png in (images or {}).items():
        data = base64.b64encode(png).decode()
        parts.append(
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    style = (
        "body{font-family:sans-serif;margin:2em}table.summary{border-collapse:collapse;font-size:13px}"
        "table.summary td,table.summary th{padding:2px 8px;border-bottom:1px solid #ddd}"
        "img{max-width:700px}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )
