"""Chapter 2 live: the decision boundary (or a softmax's class regions), every hidden unit over
the plane, the curves, and the layers' health."""

from __future__ import annotations

import numpy as np

from figures import curves, images, layers, plot
from figures.views import NUMBERS, Views, last_number

LAYOUT = (
    ((("boundary",), 3), (("loss", "accuracy"), 2)),
    ("neurons",),
    ("health", "flow"),
    ("activations",),
)


def draw(run) -> dict:
    if not run.history:
        return {}
    v = run.view
    parts = {
        NUMBERS: [
            ["test accuracy", last_number(run, "test_acc", ".1%")],
            ["train accuracy", last_number(run, "train_acc", ".1%")],
            ["test loss", last_number(run, "test_loss", ".3f")],
            ["train loss", last_number(run, "train_loss", ".3f")],
        ],
        "boundary": boundary(run),
        "loss": curves.curves_figure(
            {
                "batches (every step)": run.series("train_loss") if run.curve else ([], []),
                "training set": _snapshots(run, "train_loss"),
                "test set": _snapshots(run, "test_loss"),
            },
            "loss",
            styles={"batches (every step)": {"color": "#b7c7dc"}},
            height=260,
        ),
        "accuracy": curves.curves_figure(
            {"training set": _snapshots(run, "train_acc"), "test set": _snapshots(run, "test_acc")},
            "accuracy",
            height=240,
        ),
        "neurons": neurons(v["neurons"]),
    }
    if run.layer_history:
        parts["health"] = layers.layer_health_figure(run.layers)
        parts["flow"] = layers.gradient_flow_over_time_figure(run.layer_history)
        parts["activations"] = layers.activation_histograms_figure(run.layer_history)
    return parts


def _snapshots(run, metric: str) -> tuple[list, list]:
    rows = [r for r in run.history if metric in r]
    return [r["step"] for r in rows], [r[metric] for r in rows]


def boundary(run, picked=None) -> dict:
    """Two classes: P(blue) with its 0.5 line; more: the softmax's winning class, by confidence."""
    v = run.view
    draw_one = images.decision_boundary_figure if v["boundary"].ndim == 2 else images.class_regions_figure
    return draw_one(v["boundary"], v["extent"], v["X_train"], v["y_train"], v["X_test"], v["y_test"], picked)


def neurons(maps: list) -> dict:
    """Every hidden unit's output over the plane: one row per layer (first on top)."""
    if not maps:
        return plot.empty("A linear model has no hidden units: its boundary is one straight line.")
    width = max(m.shape[0] for m in maps)
    tiles = np.full((len(maps) * width, *maps[0].shape[1:]), np.nan, dtype=np.float32)
    for i, layer in enumerate(maps):  # one row per layer, units left to right
        tiles[i * width : i * width + len(layer)] = layer
    return images.mosaic_figure(
        tiles[:, ::-1],
        cols=width,
        height=90 * len(maps) + 60,
        title="every hidden unit over the plane (rows: layers; blue high, red low, each to its own scale)",
    )


VIEWS = Views(draw, LAYOUT)
