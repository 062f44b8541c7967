"""Loss and metric curves over training steps."""

from __future__ import annotations

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


def show_curves(history: list[dict], keys: list[str], key: str, **kw) -> None:
    st.plotly_chart(curves_figure(history, keys, **kw), key=key)


def example() -> go.Figure:
    history = [{"step": s, "train_loss": 1 / s, "test_loss": 1.2 / s} for s in range(1, 50)]
    return curves_figure(history, ["train_loss", "test_loss"], "Loss")
