"""Chapter 10 live: the MLP's validation score against the two baselines' (flat lines, fitted
once), its training loss, every categorical column's embedding map, and after training what
each model leans on."""

from __future__ import annotations

import numpy as np

from figures import curves, plot
from figures.views import NUMBERS, Views

MLP = "MLP + embeddings"
BASELINES = ("linear (one-hot)", "gradient boosting")
LABELLED = 40  # a map with at most this many points names each one


def score_name(run) -> str:
    return "val RMSE" if run.view.get("task", "regression") == "regression" else "val accuracy"


def scores_figure(run) -> dict:
    name = score_name(run)
    fig = curves.curves_figure(
        {MLP: run.series(f"{MLP}: {name}")},
        f"{name} on the same validation rows" + (" (lower is better)" if name == "val RMSE" else ""),
        height=320,
    )
    marks = [
        plot.hline(v, f"{b} {v:.3g}", color=plot.colour(i + 1), dash="dash")
        for i, b in enumerate(BASELINES)
        if (v := run.last(f"{b}: {name}")) is not None
    ]
    return plot.with_marks(fig, *marks)


def embedding_figure(column: str, points: np.ndarray, levels: list[str], groups: list[str] | None) -> dict:
    """One point per category; coloured by the hidden group when the data has one; small maps
    name their points."""
    points = np.asarray(points)
    named = len(levels) <= LABELLED
    if groups:
        data = []
        for i, g in enumerate(dict.fromkeys(groups)):
            at = [k for k, h in enumerate(groups) if h == g]
            trace = plot.markers(points[at, 0], points[at, 1], g, size=9 if named else 6)
            trace["marker"]["color"] = plot.colour(i)
            trace["text"] = [levels[k] for k in at]
            trace["hovertemplate"] = "%{text}<extra>" + g + "</extra>"
            if named:
                trace.update(mode="markers+text", textposition="top center")
            data.append(trace)
    else:
        trace = plot.markers(points[:, 0], points[:, 1], column, size=9 if named else 6)
        trace.update(text=levels, hovertemplate="%{text}<extra></extra>")
        if named:
            trace.update(mode="markers+text", textposition="top center")
        data = [trace]
    title = f"{column}: its {len(levels)} embeddings" + (
        " (2 principal components)" if len(levels) > 2 else ""
    )
    return plot.figure(
        data, title, 340, legend=bool(groups), xaxis={"zeroline": False}, yaxis={"zeroline": False}
    )


def importance_figure(importance: dict[str, dict[str, float]]) -> dict:
    """Each method's share of the credit per feature, grouped by feature."""
    data = [
        plot.bar(list(shares), list(shares.values()), plot.colour(i), name=method)
        for i, (method, shares) in enumerate(importance.items())
    ]
    return plot.figure(
        data,
        "what each feature is worth: share of the credit, by method",
        340,
        barmode="group",
        yaxis={"tickformat": ".0%"},
    )


def draw(run) -> dict:
    if not run.history:
        return {}
    name = score_name(run)
    fmt = ".3g" if name == "val RMSE" else ".1%"
    numbers = [[m, format(v, fmt)] for m in (MLP, *BASELINES) if (v := run.last(f"{m}: {name}")) is not None]
    parts = {
        NUMBERS: [[f"{m}: {name}", v] for m, v in numbers],
        "scores": scores_figure(run),
        "loss": curves.curves_figure(
            {"train": run.series("train_loss")},
            "training loss (standardized)" if name == "val RMSE" else "training loss",
            log_y=True,
            height=260,
        ),
    }
    v = run.view
    groups = v.get("groups", {})
    for column, points in v.get("maps", {}).items():
        if len(v["levels"][column]) <= 2:  # two points on a line: nothing to see
            continue
        parts[f"map: {column}"] = embedding_figure(column, points, v["levels"][column], groups.get(column))
    if "importance" in v:
        parts["importance"] = importance_figure(v["importance"])
    return parts


VIEWS = Views(draw, (("scores", "loss"), ("map: *",), ("importance",)))
