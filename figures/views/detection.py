"""Chapter 20 live: for each detector, one held-out scene with its boxes before and after
non-maximum suppression and every cell's objectness; mAP@0.5 as it trains, the precision–recall
curves, and the loss in its three parts."""

from __future__ import annotations

import numpy as np

from figures import compare, plot
from figures.variants import metric
from figures.views import NUMBERS, Views

CLASSES = ("circle", "square", "triangle")
CLASS_COLOURS = ("#E45756", "#4C78A8", "#F58518")
SIDE = 64


def _names(run) -> list[str]:
    return [n for n in compare.variants(run) if run.last(metric(n, "mAP@0.5")) is not None]


def _box_shapes(boxes: list, width: float, dash: str, colour=None) -> list[dict]:
    return [
        {
            "type": "rect",
            "x0": b[0] - 0.5,
            "y0": b[1] - 0.5,
            "x1": b[2] - 0.5,
            "y1": b[3] - 0.5,
            "line": {"color": colour or CLASS_COLOURS[int(b[5])], "width": width, "dash": dash},
        }
        for b in boxes
    ]


def scene_figure(info: dict, title: str, chosen: int | None = None) -> dict:
    """The scene with its true boxes (green, dotted), the boxes above the threshold before NMS
    (thin) and those NMS kept (thick, with their scores). An invisible marker at each kept box's
    centre makes it clickable (Streamlit reports clicks on points only)."""
    image = np.asarray(info["image"], dtype=np.float32)
    kept = info["after_nms"]
    shapes = _box_shapes([[*t, 0, 0] for t in info["truth"]], 1.5, "dot", "#2ca02c")
    shapes += _box_shapes(info["before_nms"], 0.8, "solid")
    shapes += _box_shapes(kept, 2.5, "solid")
    centres = {
        "type": "scatter",
        "mode": "markers+text",
        "x": [(b[0] + b[2]) / 2 - 0.5 for b in kept],
        "y": [b[1] - 2.5 for b in kept],
        "text": [f"{CLASSES[int(b[5])]} {b[4]:.2f}" for b in kept],
        "textfont": {"size": 11, "color": [CLASS_COLOURS[int(b[5])] for b in kept]},
        "marker": {"size": 14, "opacity": 0},
        "hovertemplate": "%{text}<extra>click to explain</extra>",
        "showlegend": False,
    }
    data = [plot.heatmap(image, "Greys", showscale=False, reversescale=True, hoverinfo="skip"), centres]
    if chosen is not None and chosen < len(kept):
        b = kept[chosen]
        shapes += _box_shapes([b], 4, "solid", "#111111")
    subtitle = f"{len(info['before_nms'])} boxes above the threshold, {len(kept)} after NMS"
    fig = plot.figure(data, f"{title}<br><sup>{subtitle}</sup>", 380, legend=False, shapes=shapes)
    fig["layout"]["margin"] = {**fig["layout"].get("margin", {}), "t": 64}
    fig["layout"]["xaxis"] = {"range": [-0.5, SIDE - 0.5]}
    fig["layout"]["yaxis"] = {"range": [SIDE - 0.5, -6]}
    return plot.image_axes(fig)


def objectness_figure(info: dict, title: str) -> dict:
    heat = np.asarray(info["heat"], dtype=np.float32)
    grid = len(heat)
    cell = SIDE / grid
    centres = [(i + 0.5) * cell - 0.5 for i in range(grid)]
    trace = plot.heatmap(heat, x=centres, y=centres, zmin=0, zmax=1, colorbar={"thickness": 10})
    shapes = _box_shapes([[*t, 0, 0] for t in info["truth"]], 1.5, "dot", "#ffffff")
    fig = plot.figure([trace], title, 360, legend=False, shapes=shapes)
    fig["layout"]["xaxis"] = {"range": [-0.5, SIDE - 0.5]}
    fig["layout"]["yaxis"] = {"range": [SIDE - 0.5, -0.5]}
    return plot.image_axes(fig)


def pr_figure(infos: dict[str, dict]) -> dict:
    data = [
        plot.line(info["curve"]["recall"], info["curve"]["precision"], name, color=plot.colour(i))
        for i, (name, info) in enumerate(infos.items())
        if info.get("curve", {}).get("recall")
    ]
    return plot.figure(
        data,
        "precision–recall on held-out scenes (all classes, with NMS)",
        320,
        xaxis={"title": "recall", "range": [0, 1.02]},
        yaxis={"title": "precision", "range": [0, 1.02]},
    )


def draw(run) -> dict:
    names = _names(run)
    if not names:
        return {}
    infos = {n: compare.variants(run)[n] for n in names}
    numbers = []
    for n in names:
        numbers.append([f"{n}: mAP@0.5", f"{run.last(metric(n, 'mAP@0.5')):.2f}"])
        numbers.append(
            [
                f"{n}: precision / recall",
                f"{run.last(metric(n, 'precision')):.0%} / {run.last(metric(n, 'recall')):.0%}",
            ]
        )
    parts = {NUMBERS: numbers}
    for n, info in infos.items():
        if "image" in info:
            parts[f"scene {n}"] = scene_figure(info, f"{n}: a held-out scene")
            parts[f"objectness {n}"] = objectness_figure(info, f"{n}: objectness of each cell")
    parts["map"] = compare.compare_curves_figure(run, names, ["mAP@0.5"], "mAP@0.5 on held-out scenes")
    parts["pr"] = pr_figure(infos)
    parts["loss"] = compare.compare_curves_figure(
        run, names, ["objectness loss", "class loss", "box loss"], "the loss in its three parts", log_y=True
    )
    return parts


VIEWS = Views(draw, (("scene*",), ("objectness*",), ("map", "pr"), ("loss",)))
