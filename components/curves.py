"""Loss and metric curves over training steps."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

MAX_POINTS = 400  # downsample long histories: a redraw should stay small


def thin(rows: list[dict], max_points: int = MAX_POINTS) -> list[dict]:
    """Every k-th row, always keeping the last, so long runs redraw as fast as short ones."""
    if len(rows) <= max_points:
        return rows
    stride = -(-len(rows) // max_points)
    return rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])


def curves_figure(
    history: list[dict],
    keys: list[str],
    title: str = "",
    y_title: str = "",
    log_y: bool = False,
    height: int = 300,
) -> go.Figure:
    rows = thin(history)
    fig = go.Figure()
    for key in keys:
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            xs, ys = zip(*points)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=key))
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="step",
        yaxis_title=y_title,
        legend=dict(orientation="h"),
    )
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def series_figure(
    values: np.ndarray, names: list[str], title: str = "", log_y: bool = False, height: int = 280, steps=None
) -> go.Figure:
    """Columns of a (rows, k) array as k lines over `steps` (default 1..rows): a lab's
    per-step record."""
    values = np.asarray(values).reshape(len(values), -1)
    stride = max(1, len(values) // MAX_POINTS)
    xs = (np.arange(1, len(values) + 1) if steps is None else np.asarray(steps))[::stride]
    fig = go.Figure(
        [go.Scatter(x=xs, y=values[::stride, i], mode="lines", name=n) for i, n in enumerate(names)]
    )
    fig.update_layout(
        title=dict(text=title, font_size=13),
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="step",
        legend=dict(orientation="h"),
    )
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def derivative_figure(x, f, autograd, numeric, height: int = 320) -> go.Figure:
    """f, and its derivative two ways: autograd (solid) under a finite difference (dotted)."""
    fig = go.Figure(
        [
            go.Scatter(x=x, y=f, name="f(x)", line=dict(color="#4c78a8", width=3)),
            go.Scatter(x=x, y=autograd, name="f′ by autograd", line=dict(color="#e45756", width=5)),
            go.Scatter(
                x=x, y=numeric, name="f′ by (f(x+h) − f(x−h)) / 2h", line=dict(color="#222", dash="dot")
            ),
        ]
    )
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h"), xaxis_title="x"
    )
    return fig


def fit_figure(x, y, grid, fit, title: str = "", height: int = 340) -> go.Figure:
    """Data points and the fitted curve."""
    fig = go.Figure(go.Scatter(x=x, y=y, mode="markers", name="data", marker=dict(color="#4c78a8", size=7)))
    fig.add_trace(go.Scatter(x=grid, y=fit, mode="lines", name="fit", line=dict(color="#e45756", width=3)))
    lo, hi = float(np.nanmin(y)), float(np.nanmax(y))
    pad = 0.3 * (hi - lo + 1e-6)
    fig.update_layout(
        title=dict(text=title, font_size=13),
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        yaxis_range=[lo - pad, hi + pad],  # a diverging fit should not squash the data flat
        legend=dict(orientation="h"),
    )
    return fig


def show_curves(history: list[dict], keys: list[str], key: str, **kw) -> None:
    st.plotly_chart(curves_figure(history, keys, **kw), key=key)


def example() -> go.Figure:
    history = [{"step": s, "train_loss": 1 / s, "test_loss": 1.2 / s} for s in range(1, 50)]
    return curves_figure(history, ["train_loss", "test_loss"], "Loss")
