"""Loss and metric curves over training steps, a lab's per-step records, and chapter 1's fit."""

from __future__ import annotations

import numpy as np

from figures import plot


def curves_figure(
    lines: dict[str, tuple],
    title: str = "",
    y_title: str = "",
    log_y: bool = False,
    height: int = 300,
    x_title: str = "step",
    styles: dict[str, dict] | None = None,
) -> dict:
    """One line per name: {name: (steps, values)} (a run's `series(metric)`)."""
    data = []
    for i, (name, (xs, ys)) in enumerate(lines.items()):
        xs, ys = plot.thin(xs, ys)
        # as arrays: sent as typed arrays, ten times faster to encode than lists of floats (a
        # live frame carries every curve of a page); a missing value stays a gap (NaN)
        xs, ys = np.asarray(xs), np.asarray(ys, dtype=np.float32)
        style = (styles or {}).get(name, {})
        data.append(
            plot.line(xs, ys, name, color=style.get("color", plot.colour(i)), dash=style.get("dash", "solid"))
        )
    yaxis = plot.log_axis(*(t["y"] for t in data), title=y_title) if log_y else {"title": y_title}
    return plot.figure(data, title, height, xaxis={"title": x_title}, yaxis=yaxis)


def series_figure(
    values, names: list[str], title: str = "", log_y: bool = False, height: int = 280, steps=None
):
    """Columns of a (rows, k) array as k lines over `steps` (default 1..rows): a lab's per-step record."""
    values = np.asarray(values).reshape(len(values), -1)
    xs = np.arange(1, len(values) + 1) if steps is None else np.asarray(steps)
    stride = max(1, len(values) // plot.MAX_POINTS)
    data = [plot.line(xs[::stride], values[::stride, i], name) for i, name in enumerate(names)]
    yaxis = plot.log_axis(*(t["y"] for t in data)) if log_y else {}
    return plot.figure(data, title, height, legend=len(names) > 1, xaxis={"title": "step"}, yaxis=yaxis)


def derivative_figure(x, f, autograd, numeric, height: int = 320) -> dict:
    """f, and its derivative two ways: autograd (solid) under a finite difference (dotted)."""
    data = [
        plot.line(x, f, "f(x)", color="#4c78a8", width=3),
        plot.line(x, autograd, "f′ by autograd", color="#e45756", width=5),
        plot.line(x, numeric, "f′ by (f(x+h) − f(x−h)) / 2h", color="#222222", dash="dot"),
    ]
    return plot.figure(data, "", height, xaxis={"title": "x"})


def fit_figure(x, y, grid, fit, title: str = "", height: int = 340) -> dict:
    """Data points and the fitted curve."""
    lo, hi = float(np.nanmin(y)), float(np.nanmax(y))
    pad = 0.3 * (hi - lo + 1e-6)
    data = [
        plot.markers(x, y, "data", marker={"color": "#4c78a8", "size": 7}),
        plot.line(grid, fit, "fit", color="#e45756", width=3),
    ]
    # a diverging fit should not squash the data flat
    return plot.figure(data, title, height, yaxis={"range": [lo - pad, hi + pad]})


def example() -> dict:
    steps = list(range(1, 50))
    return curves_figure(
        {"train_loss": (steps, [1 / s for s in steps]), "test_loss": (steps, [1.2 / s for s in steps])},
        "loss",
    )
