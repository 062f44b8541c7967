"""Figures for the optimizers chapter (and chapter 1's loss surface): trajectories on
contours, the LR range test, schedules."""

from __future__ import annotations

import numpy as np

from figures import plot

MAX_PATH_POINTS = 500
CONTOUR_STEPS = 30_000  # a surface's log heights, as int16
COLORS = {
    "sgd": "#e45756",
    "momentum": "#4c78a8",
    "nesterov": "#72b7b2",
    "rmsprop": "#f58518",
    "adam": "#54a24b",
    "adamw": "#b279a2",
}


def trajectories_figure(
    contours: dict, paths: dict[str, np.ndarray], minima, title: str = "", height: int = 460
):
    """Each optimizer's path from the shared start, over log-spaced contours of the surface."""
    z = np.asarray(contours["z"])
    heights = np.log1p(z - z.min())
    # As 16-bit steps of its range: the main picture of a race is sent with every snapshot and
    # must stay light (labs/core/frames.py HEAVY_BYTES); 30 contour lines need no finer heights.
    levels = np.round(heights * (CONTOUR_STEPS / max(float(heights.max()), 1e-12))).astype(np.int16)
    data = [
        {
            "type": "contour",
            "x": np.asarray(contours["x"], dtype=np.float32),
            "y": np.asarray(contours["y"], dtype=np.float32),
            "z": levels,
            "colorscale": plot.scale("Greys"),
            "ncontours": 30,
            "showscale": False,
            "contours": {"coloring": "lines"},
            "hoverinfo": "skip",
            "showlegend": False,
        }
    ]
    heads, colours = [], []
    for i, (name, path) in enumerate(paths.items()):
        path = np.asarray(path)
        if len(path) > MAX_PATH_POINTS:  # long races stay light to draw; keep where it ended
            path = np.concatenate([path[:: len(path) // MAX_PATH_POINTS], path[-1:]])
        color = COLORS.get(name, plot.colour(i))
        # A line per path, no marker per step: a marker at each of thousands of steps made a live
        # redraw three times as slow (the race is watched moving, at up to 24 redraws a second).
        path = path.astype(np.float32)
        data.append(plot.line(path[:, 0], path[:, 1], name, color=color))
        heads.append((name, path[-1]))
        colours.append(color)
    # Where each optimizer stands now: the head of its path.
    data.append(
        plot.markers(
            [float(p[0]) for _, p in heads],
            [float(p[1]) for _, p in heads],
            "now",
            size=10,
            text=[n for n, _ in heads],
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
        )
    )
    data[-1]["marker"].update(color=colours, line={"width": 1.5, "color": "white"})
    mx, my = zip(*minima)
    star = {"symbol": "star", "size": 16, "color": "gold", "line": {"width": 1, "color": "black"}}
    data.append(plot.markers(list(mx), list(my), "minimum", marker=star))
    return plot.figure(
        data,
        title,
        height,
        xaxis={"range": [float(contours["x"][0]), float(contours["x"][-1])]},
        yaxis={"range": [float(contours["y"][0]), float(contours["y"][-1])]},
    )


def lr_finder_figure(lrs: np.ndarray, losses: np.ndarray, suggested: float | None) -> dict:
    """Smoothed loss against learning rate (log x); click a point to pick that rate."""
    data = [plot.line(lrs, losses, "smoothed loss", mode="lines+markers", marker={"size": 5})]
    fig = plot.figure(
        data,
        "LR range test: smoothed loss as the learning rate grows",
        340,
        legend=False,
        xaxis=plot.log_axis(lrs, title="learning rate"),
        yaxis={"title": "loss"},
    )
    if suggested:
        fig = plot.with_marks(
            fig, plot.vline(suggested, f"suggested {suggested:.2g}", color="#54a24b", dash="dash")
        )
    return fig


def schedule_figure(lrs: np.ndarray, used: tuple[list, list] | None = None) -> dict:
    """The planned learning rate per step, and the rate actually used so far."""
    data = [plot.line(np.arange(1, len(lrs) + 1), lrs, "planned", color="#bbbbbb", width=3)]
    if used and used[0]:
        data.append(plot.line(used[0], used[1], "used", color="#4c78a8"))
    # from 0 to just above the highest rate: a constant rate reads as its value, not as a line
    # lost in plotly's default range around it (0.01 drawn on −0.5 … 1 looked like 0)
    highest = max([float(np.max(lrs)), *(used[1] if used else [])])
    top = 1.15 * highest if highest > 0 else 1.0
    return plot.figure(data, "learning rate", 300, xaxis={"title": "step"}, yaxis={"range": [0, top]})


def example() -> dict:
    xs = np.linspace(-2, 2, 30)
    gx, gy = np.meshgrid(xs, xs)
    path = np.array([[-1.5, 1.5], [-1, 1], [0, 0]])
    return trajectories_figure({"x": xs, "y": xs, "z": gx**2 + gy**2}, {"sgd": path}, [(0, 0)])
