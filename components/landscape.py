"""Figures for the optimizers chapter: trajectories on contours, the LR range test, schedules."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

MAX_PATH_POINTS = 500
COLORS = {
    "sgd": "#e45756",
    "momentum": "#4c78a8",
    "nesterov": "#72b7b2",
    "rmsprop": "#f58518",
    "adam": "#54a24b",
    "adamw": "#b279a2",
}


def trajectories_figure(contours: dict, paths: dict[str, np.ndarray], minima) -> go.Figure:
    """Each optimizer's path from the shared start, over log-spaced contours of the surface."""
    z = contours["z"]
    fig = go.Figure(
        go.Contour(
            x=contours["x"],
            y=contours["y"],
            z=np.log1p(z - z.min()),
            colorscale="Greys",
            ncontours=30,
            showscale=False,
            contours=dict(coloring="lines"),
            hoverinfo="skip",
        )
    )
    for name, path in paths.items():
        if len(path) > MAX_PATH_POINTS:  # long races stay light to draw; keep where it ended
            path = np.concatenate([path[:: len(path) // MAX_PATH_POINTS], path[-1:]])
        fig.add_trace(
            go.Scatter(
                x=path[:, 0],
                y=path[:, 1],
                mode="lines+markers",
                name=name,
                marker=dict(size=3),
                line=dict(color=COLORS.get(name), width=2),
            )
        )
    mx, my = zip(*minima)
    fig.add_trace(
        go.Scatter(
            x=mx,
            y=my,
            mode="markers",
            name="minimum",
            marker=dict(symbol="star", size=16, color="gold", line=dict(width=1, color="black")),
        )
    )
    fig.update_layout(
        height=460,
        margin=dict(l=10, r=10, t=10, b=10),
        legend=dict(orientation="h"),
        xaxis=dict(range=[contours["x"][0], contours["x"][-1]]),
        yaxis=dict(range=[contours["y"][0], contours["y"][-1]]),
    )
    return fig


def lr_finder_figure(lrs: np.ndarray, losses: np.ndarray, suggested: float | None) -> go.Figure:
    """Smoothed loss against learning rate (log x); click a point to pick that rate."""
    fig = go.Figure(
        go.Scatter(x=lrs, y=losses, mode="lines+markers", marker=dict(size=5), name="smoothed loss")
    )
    if suggested:
        fig.add_vline(
            x=suggested, line_dash="dash", line_color="#54a24b", annotation_text=f"suggested {suggested:.2g}"
        )
    fig.update_layout(
        height=340,
        xaxis_type="log",
        xaxis_title="learning rate",
        yaxis_title="loss",
        margin=dict(l=10, r=10, t=30, b=10),
    )
    return fig


def schedule_figure(lrs: np.ndarray, live: list[dict] | None = None) -> go.Figure:
    """The planned learning rate per step, and the rate actually used so far."""
    fig = go.Figure(
        go.Scatter(x=np.arange(1, len(lrs) + 1), y=lrs, name="planned", line=dict(color="#bbbbbb", width=3))
    )
    if live:
        fig.add_trace(
            go.Scatter(
                x=[r["step"] for r in live],
                y=[r["lr"] for r in live],
                name="used",
                line=dict(color="#4c78a8"),
            )
        )
    fig.update_layout(
        height=300,
        title="learning rate",
        xaxis_title="step",
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h"),
    )
    return fig


def example() -> go.Figure:
    xs = np.linspace(-2, 2, 30)
    gx, gy = np.meshgrid(xs, xs)
    path = np.array([[-1.5, 1.5], [-1, 1], [0, 0]])
    return trajectories_figure({"x": xs, "y": xs, "z": gx**2 + gy**2}, {"sgd": path}, [(0, 0)])
