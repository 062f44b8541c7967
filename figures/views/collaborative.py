"""Chapter 11 live: training and validation RMSE of each model (the SVD, fitted once, as flat
lines), and the item map, coloured by the hidden genre the model never sees; after training,
a user's picks with each score split into bias and taste."""

from __future__ import annotations

import numpy as np

from figures import compare, plot
from figures.variants import metric
from figures.views import NUMBERS, Views

LIVE = ("dot product", "biases only")
SVD = "SVD (scikit-learn)"


def rmse_figure(run, names: list[str]) -> dict:
    live = [n for n in names if n != SVD]
    fig = compare.compare_curves_figure(
        run, live, ["train RMSE", "val RMSE"], "RMSE in stars: training (solid), held-out (dashed)"
    )
    marks = [
        plot.hline(v, f"SVD held-out {v:.3f}", color=plot.colour(names.index(SVD)), dash="dash")
        for v in [run.last(metric(SVD, "val RMSE"))]
        if SVD in names and v is not None
    ]
    fig["layout"]["margin"]["t"] = 60  # room for a legend of four lines
    return plot.with_marks(fig, *marks)


def item_map_figure(points: np.ndarray, genre: list[str], titles: list[str], rated: np.ndarray) -> dict:
    """One point per item, coloured by its hidden genre; the size says how many ratings it had
    to learn from (rarely rated items stay near the middle: little pulled them out)."""
    points, genre, rated = np.asarray(points), np.asarray(genre), np.asarray(rated)
    size = np.clip(3 + np.sqrt(rated), 3, 14)
    data = []
    for i, g in enumerate(sorted(set(genre.tolist()))):
        at = np.flatnonzero(genre == g)
        trace = plot.markers(points[at, 0], points[at, 1], g)
        trace["marker"].update(color=plot.colour(i), size=size[at].tolist(), opacity=0.8)
        trace["text"] = [f"{titles[k]} ({rated[k]} ratings)" for k in at]
        trace["hovertemplate"] = "%{text}<extra>" + g + "</extra>"
        data.append(trace)
    return plot.figure(
        data,
        "items: their vectors on 2 principal components, coloured by hidden genre",
        440,
        xaxis={"zeroline": False},
        yaxis={"zeroline": False},
    )


def recommendations_figure(picks: list[dict]) -> dict:
    """Horizontal bars, best first: the bias part, then the taste part stacked on it."""
    names = [f"{p['item']}" for p in picks][::-1]
    bias = [p["bias"] for p in picks][::-1]
    taste = [p["taste"] for p in picks][::-1]
    data = [
        {**plot.bar(bias, names, plot.colour(1), name="bias: mean + user + item"), "orientation": "h"},
        {**plot.bar(taste, names, plot.colour(0), name="taste: user · item"), "orientation": "h"},
    ]
    return plot.figure(data, "predicted rating = bias + taste", 40 + 32 * len(picks) + 60, barmode="relative")


def draw(run) -> dict:
    infos = compare.variants(run)
    names = [n for n in infos if run.last(metric(n, "val RMSE")) is not None]
    if not names:
        return {}
    parts = {
        NUMBERS: [[f"{n}: held-out RMSE", f"{run.last(metric(n, 'val RMSE')):.3f}"] for n in names],
        "rmse": rmse_figure(run, names),
    }
    dot = infos.get("dot product", {})
    if "items" in dot and "genre" in dot:
        parts["items"] = item_map_figure(dot["items"], dot["genre"], dot["titles"], dot["rated"])
    return parts


VIEWS = Views(draw, (("rmse", "items"),))
