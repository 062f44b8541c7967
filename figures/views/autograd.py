"""Chapter 1 live: the fit, the descent on the loss surface, every coefficient's gradient, the
loss, and the graph autograd recorded."""

from __future__ import annotations

import numpy as np

from figures import curves, graph, landscape
from figures.views import NUMBERS, Views, last_number

LAYOUT = (("fit", "surface"), ("grads", "loss"), ("graph",))


def draw(run, shown: int | None = None) -> dict:
    """Everything at path row `shown` (default: the latest; the page replays older rows)."""
    if not run.history:
        return {}
    v = run.view
    rows = v["path_steps"]
    shown = len(rows) - 1 if shown is None else shown
    names = [f"c{i}" for i in range(v["path"].shape[1])]
    surface = {"x": v["surface"]["c0"], "y": v["surface"]["c1"], "z": v["surface"]["loss"]}
    return {
        NUMBERS: [
            ["loss (all points)", last_number(run, "loss", ".4f")],
            ["gradient norm", last_number(run, "gradient norm", ".2e")],
            ["hand vs autograd, max |Δ|", last_number(run, "hand vs autograd", ".1e")],
        ],
        "fit": curves.fit_figure(
            v["x"], v["y"], v["grid"], fit_at(v, shown), f"the fit after step {rows[shown]:,}"
        ),
        "surface": landscape.trajectories_figure(
            surface,
            {"descent": v["path"][: shown + 1, :2]},
            [tuple(v["best"][:2])],
            "loss over (c0, c1), the rest held where they are; ★ the exact least-squares fit",
            height=400,
        ),
        "grads": curves.series_figure(
            v["grads"], names, "each coefficient's gradient", steps=v["record_steps"]
        ),
        "loss": curves.series_figure(
            v["losses"], ["loss"], "loss on all points", log_y=True, steps=v["record_steps"]
        ),
        "graph": graph.graph_figure(v["graph"]),
    }


def fit_at(view: dict, row: int) -> np.ndarray:
    """The fitted curve on view["grid"] with the coefficients of path row `row` (the replay):
    the model is the polynomial c0 + c1·x + c2·x² + …"""
    c = view["path"][min(row, len(view["path"]) - 1)]
    return np.polynomial.polynomial.polyval(view["grid"], c).astype(np.float32)


VIEWS = Views(draw, LAYOUT)
