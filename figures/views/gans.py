"""Chapter 16 live: the plane (the discriminator's verdict, the target, the generated points
and where the generator's loss pushes them), losses, gradient norms, modes covered; and the
DCGAN's samples from fixed noise."""

from __future__ import annotations

import numpy as np

from figures import curves, images, plot
from figures.views import NUMBERS, Views, last_number

ARROW_LENGTH = 0.35  # the longest arrow, in the plane's units


def plane_figure(v: dict, critic: bool) -> dict:
    """D's field as a heatmap; target points grey, generated orange; one arrow per point that
    carries one, scaled so the longest is ARROW_LENGTH long."""
    grid = v["grid"]
    field = plot.heatmap(
        v["field"],
        "RdBu",
        x=grid,
        y=grid,
        opacity=0.7,
        zsmooth="fast",  # the browser smooths the grid's bricks: D's verdict is a smooth field
        colorbar={"title": {"text": "critic score" if critic else "D: P(real)"}, "len": 0.8},
        **({} if critic else {"zmin": 0, "zmax": 1}),
    )
    target, generated, push = v["target"], v["generated"], v["push"]
    xs, ys = _arrows(generated[: len(push)], push)
    data = [
        field,
        _coloured(plot.markers(target[:, 0], target[:, 1], "target", size=4), "#555555"),
        _coloured(plot.markers(generated[:, 0], generated[:, 1], "generated", size=4), "#f58518"),
        plot.line(xs, ys, "G's push on a point", color="#111", width=1.5),
    ]
    extent = float(grid[-1])
    return plot.figure(
        data,
        "the plane: D's verdict, the target (grey), generated points (orange), G's push (lines)",
        520,
        xaxis={"range": [-extent, extent], "constrain": "domain"},
        yaxis={"range": [-extent, extent], "scaleanchor": "x"},
    )


def _arrows(starts: np.ndarray, push: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One line of segments, start to start + push scaled so the longest is ARROW_LENGTH, each
    followed by a NaN that breaks the line; as arrays, sent as typed arrays (a list of floats and
    Nones took half the plane's encoding)."""
    scale = ARROW_LENGTH / (np.linalg.norm(push, axis=1).max() + 1e-12)
    nan = np.full_like(starts, np.nan)
    segments = np.stack([starts, starts + scale * push, nan], 1).astype(np.float32)  # (arrows, 3, 2)
    return segments[..., 0].ravel(), segments[..., 1].ravel()


def _coloured(trace: dict, color: str) -> dict:
    trace["marker"]["color"] = color
    return trace


def _latest(run, metric: str) -> str:
    """The last value of a curve logged at every step (not in the snapshots' rows)."""
    values = run.series(metric)[1]
    return f"{values[-1]:.3f}" if values else "–"


def _losses(run) -> dict:
    return curves.curves_figure(
        {"D loss": run.series("d_loss"), "G loss": run.series("g_loss")}, "losses", height=260
    )


def _grads(run) -> dict:
    return curves.curves_figure(
        {"D": run.series("d_grad_norm"), "G": run.series("g_grad_norm")},
        "gradient norm of each net's weights",
        log_y=True,
        height=260,
    )


def draw(run) -> dict:
    if not run.history:
        return {}
    v = run.view
    ring = run.cfg is None or run.cfg.target == "ring"
    numbers = [["D loss", _latest(run, "d_loss")], ["G loss", _latest(run, "g_loss")]]
    if ring and run.last("modes_covered") is not None:
        numbers = [
            ["modes covered", f"{int(run.last('modes_covered'))} of 8"],
            ["points on a mode", last_number(run, "on_a_mode", ".0%")],
            *numbers,
        ]
    parts = {NUMBERS: numbers, "losses": _losses(run), "grads": _grads(run)}
    if "field" in v and "grid" in v:
        parts["plane"] = plane_figure(v, critic=run.cfg is not None and run.cfg.loss == "wgan_gp")
    if ring and run.last("modes_covered") is not None:
        modes = curves.curves_figure(
            {"modes": run.series("modes_covered")}, "modes covered (of 8)", height=260
        )
        modes["layout"]["yaxis"] = {"range": [0, 8.5], "dtick": 1}
        parts["modes"] = modes
    return parts


TOY = Views(draw, (((("plane",), 3), (("modes", "losses", "grads"), 2)),))


def samples_figure(samples: np.ndarray, cols: int = 8) -> dict:
    """Generated digits in [0, 1], black on white, one tile each (no per-tile rescaling: a
    washed-out sample should look washed out)."""
    canvas = images.mosaic(np.asarray(samples), cols, normalize=False)
    trace = plot.heatmap(canvas, "Greys", showscale=False, zmin=0, zmax=1)
    fig = plot.figure([trace], "samples from the same 32 noise vectors, all run long", 330, legend=False)
    return plot.image_axes(fig)


def draw_digits(run) -> dict:
    if not run.history:
        return {}
    parts = {
        NUMBERS: [
            ["D loss", last_number(run, "d_loss", ".3f")],
            ["G loss", last_number(run, "g_loss", ".3f")],
        ],
        "losses": _losses(run),
        "grads": _grads(run),
    }
    if "samples" in run.view:
        parts["samples"] = samples_figure(run.view["samples"])
    return parts


DIGITS = Views(draw_digits, (((("samples",), 3), (("losses", "grads"), 2)),))
