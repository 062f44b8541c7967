"""Side-by-side views for comparison runs (labs/core/compare.py): every variant's curves on
one chart, one colour per variant, and one panel per variant for what happens inside."""

from __future__ import annotations

import numpy as np

from figures import plot
from figures.variants import metric

PALETTE = plot.PALETTE
colour = plot.colour


def variants(run) -> dict[str, dict]:
    """Each variant's latest view, step and status, in the order the run listed them."""
    return run.view.get("variants", {}) if run is not None else {}


def compare_curves_figure(
    run,
    names: list[str],
    metrics: list[str],
    title: str = "",
    log_y: bool = False,
    x_title: str = "step",
    height: int = 320,
) -> dict:
    """One colour per variant, one dash per metric (e.g. train solid, validation dashed); the
    dense per-step curve where the loop logged one."""
    data = []
    for i, name in enumerate(names):
        for j, m in enumerate(metrics):
            xs, ys = run.series(metric(name, m))
            if xs:
                xs, ys = plot.thin(xs, ys)
                label = f"{name} · {m}" if len(metrics) > 1 else name
                data.append(plot.line(xs, ys, label, color=colour(i), dash=plot.DASHES[j % len(plot.DASHES)]))
    yaxis = plot.log_axis(*(t["y"] for t in data)) if log_y else {}
    return plot.figure(data, title, height, xaxis={"title": x_title}, yaxis=yaxis)


def gap_figure(
    run, name: str, lower: str, upper: str, marks: dict[str, int] | None = None, i: int = 0
) -> dict:
    """One variant's two curves (train below, validation above) with the gap between them
    shaded, and vertical marks (e.g. "best epoch") where given."""
    rows = [r for r in run.history if metric(name, lower) in r]
    xs = [r["step"] for r in rows]
    data = [
        plot.line(xs, [r[metric(name, lower)] for r in rows], lower, color=colour(i)),
        plot.line(
            xs,
            [r[metric(name, upper)] for r in rows],
            upper,
            color=colour(i),
            dash="dash",
            fill="tonexty",
            fillcolor="rgba(228,87,86,0.18)",
        ),
    ]
    fig = plot.figure(data, f"{name}: the shaded gap is what memorizing costs", 300, xaxis={"title": "epoch"})
    return plot.with_marks(fig, *(plot.vline(x, label) for label, x in (marks or {}).items()))


def by_layer_figure(
    latest: dict[str, dict[str, dict]], stat: str, title: str, log_y: bool = True, height: int = 300
) -> dict:
    """One statistic per layer (x: layer, first on the left), one line per variant."""
    data = []
    for i, (name, layers) in enumerate(latest.items()):
        ys = [max(s.get(stat, 0.0), 1e-12) if log_y else s.get(stat, 0.0) for s in layers.values()]
        xs = [layer.removeprefix("layer ") for layer in layers]  # numbers fit under 30+ ticks
        data.append(plot.line(xs, ys, name, color=colour(i), mode="lines+markers"))
    yaxis = plot.log_axis(*(t["y"] for t in data)) if log_y else {}
    return plot.figure(data, title, height, xaxis={"title": "layer", "type": "category"}, yaxis=yaxis)


def status_line(name: str, info: dict) -> str:
    status = info.get("status", "training")
    where = f"step {info.get('step', 0):,} of {info.get('total', 0):,}"
    return f"{name}: {status} ({where})" if status != "training" else f"{name}: {where}"


def example() -> dict:
    from figures.record import RunRecord

    run = RunRecord()
    for s in range(1, 40):
        run.history.append({"step": s, metric("plain", "loss"): 2.3 - 0.01 * s})
        run.history.append({"step": s, metric("residual", "loss"): 2.3 * np.exp(-s / 10)})
    return compare_curves_figure(run, ["plain", "residual"], ["loss"], "loss")
