"""Side-by-side views for comparison runs (labs/core/compare.py): every variant's curves on
one chart, one colour per variant, and one column per variant for what happens inside."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from components.curves import thin
from labs.core.compare import layer_history_of, metric

PALETTE = ("#4c78a8", "#e45756", "#54a24b", "#f58518", "#b279a2", "#72b7b2")
DASHES = ("solid", "dash", "dot", "dashdot")


def variants(view) -> dict[str, dict]:
    """Each variant's latest view, step and status, in the order the run listed them."""
    return view.view.get("variants", {}) if view is not None else {}


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def compare_curves_figure(
    history: list[dict],
    names: list[str],
    metrics: list[str],
    title: str = "",
    log_y: bool = False,
    x_title: str = "step",
    height: int = 320,
) -> go.Figure:
    """One colour per variant, one dash per metric (e.g. train solid, validation dashed)."""
    rows = thin(history)
    fig = go.Figure()
    for i, name in enumerate(names):
        for j, m in enumerate(metrics):
            key = metric(name, m)
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                xs, ys = zip(*points)
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        mode="lines",
                        name=f"{name} · {m}" if len(metrics) > 1 else name,
                        line=dict(color=colour(i), dash=DASHES[j % len(DASHES)]),
                    )
                )
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title=x_title,
        legend=dict(orientation="h"),
    )
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def gap_figure(
    history: list[dict], name: str, lower: str, upper: str, marks: dict[str, int] | None = None, i: int = 0
) -> go.Figure:
    """One variant's two curves (train below, validation above) with the gap between them
    shaded, and vertical marks (e.g. "best epoch") where given."""
    rows = [r for r in thin(history) if metric(name, lower) in r]
    xs = [r["step"] for r in rows]
    fig = go.Figure(
        [
            go.Scatter(
                x=xs, y=[r[metric(name, lower)] for r in rows], name=lower, line=dict(color=colour(i))
            ),
            go.Scatter(
                x=xs,
                y=[r[metric(name, upper)] for r in rows],
                name=upper,
                fill="tonexty",
                fillcolor="rgba(228,87,86,0.18)",
                line=dict(color=colour(i), dash="dash"),
            ),
        ]
    )
    for label, x in (marks or {}).items():
        fig.add_vline(
            x=x, line=dict(color="#888", dash="dot"), annotation_text=label, annotation_position="top"
        )
    fig.update_layout(
        title=dict(text=f"{name}: the shaded gap is what memorizing costs", font_size=13),
        height=300,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="epoch",
        legend=dict(orientation="h"),
    )
    return fig


def by_layer_figure(
    latest: dict[str, dict[str, dict]], stat: str, title: str, log_y: bool = True, height: int = 300
) -> go.Figure:
    """One statistic per layer (x: layer, first on the left), one line per variant."""
    fig = go.Figure()
    for i, (name, layers) in enumerate(latest.items()):
        fig.add_trace(
            go.Scatter(
                x=[name.removeprefix("layer ") for name in layers],  # numbers fit under 30+ ticks
                y=[max(s.get(stat, 0.0), 1e-12) if log_y else s.get(stat, 0.0) for s in layers.values()],
                mode="lines+markers",
                name=name,
                line=dict(color=colour(i)),
            )
        )
    fig.update_layout(
        title=dict(text=title, font_size=13),
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h"),
        xaxis_title="layer",
    )
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def status_line(name: str, info: dict) -> str:
    status = info.get("status", "training")
    where = f"step {info.get('step', 0):,} of {info.get('total', 0):,}"
    return f"**{name}** — {status} ({where})" if status != "training" else f"**{name}** — {where}"


def show_variants(view, draw_one: Callable, per_row: int = 3) -> None:
    """One column per variant: draw_one(name, index, info, layer_history) inside it."""
    items = list(variants(view).items())
    for start in range(0, len(items), per_row):
        columns = st.columns(min(per_row, len(items) - start))
        for col, (i, (name, info)) in zip(columns, enumerate(items[start:], start)):
            with col:
                st.markdown(status_line(name, info))
                draw_one(name, i, info, layer_history_of(view.layer_history, name))


def example() -> go.Figure:
    history = []
    for s in range(1, 40):
        history.append({"step": s, metric("plain", "loss"): 2.3 - 0.01 * s})
        history.append({"step": s, metric("residual", "loss"): 2.3 * np.exp(-s / 10)})
    return compare_curves_figure(history, ["plain", "residual"], ["loss"], "loss")
