"""Chapter 9 live: each net's predicted masks beside the image and the truth, IoU per class and
on the edges over time, and the per-pixel confusion between classes."""

from __future__ import annotations

import numpy as np

from figures import compare, images, plot
from figures.variants import metric
from figures.views import NUMBERS, Views

CLASS_COLOURS = ("#e8ebf0", "#4c78a8", "#f58518", "#54a24b")  # background, circle, square, triangle


def class_scale(n: int) -> list:
    """A stepped colour scale: class k (of n) gets one flat colour over [k - ½, k + ½]."""
    scale = []
    for k, c in enumerate(CLASS_COLOURS[:n]):
        scale += [[k / n, c], [(k + 1) / n, c]]
    return scale


def mask_trace(z: np.ndarray, classes, **kw) -> dict:
    """Class indices as flat colours, with the class names on the colour bar."""
    n = len(classes)
    return {
        "type": "heatmap",
        "z": np.asarray(z, dtype=np.float32),
        "colorscale": class_scale(n),
        "zmin": -0.5,
        "zmax": n - 0.5,
        "hoverongaps": False,
        "colorbar": {
            "tickvals": list(range(n)),
            "ticktext": list(classes),
            "thickness": 12,
            "len": 0.9,
        },
        **kw,
    }


def masks_figure(
    pictures: np.ndarray, truth: np.ndarray, predicted: dict[str, np.ndarray], classes, pad: int = 4
) -> dict:
    """One row per test image: the image, the true mask, then each net's mask. The images and
    the masks are two heatmaps over one canvas (NaN where the other one draws)."""
    n, h, w = truth.shape
    columns = ["image", "truth", *predicted]
    height, width = n * (h + pad) - pad, len(columns) * (w + pad) - pad
    grey = np.full((height, width), np.nan, dtype=np.float32)
    coloured = np.full((height, width), np.nan, dtype=np.float32)
    for r in range(n):
        y = r * (h + pad)
        grey[y : y + h, :w] = pictures[r]
        for c, mask in enumerate([truth, *predicted.values()], start=1):
            x = c * (w + pad)
            coloured[y : y + h, x : x + w] = mask[r]
    notes = [
        {"text": t, "x": c * (w + pad) + w / 2, "y": -1, "yanchor": "bottom", "showarrow": False}
        for c, t in enumerate(columns)
    ]
    data = [
        plot.heatmap(grey, "Greys", showscale=False, reversescale=True, hoverinfo="skip"),
        mask_trace(coloured, classes, hovertemplate="%{z}<extra></extra>"),
    ]
    fig = plot.figure(data, "", 115 * n + 40, legend=False, annotations=notes)
    fig["layout"]["margin"] = {"l": 5, "r": 5, "t": 30, "b": 5}
    return plot.image_axes(fig)


def pick_figure(image: np.ndarray, truth: np.ndarray, row: int, col: int, classes) -> dict:
    """The test image and its true mask, with the chosen pixel marked on both. Clicking either
    picks a pixel: a transparent marker sits on every pixel, since Streamlit reports clicks on
    points and never on a heatmap's cells."""
    h, w = truth.shape
    gap = 4
    both = np.full((h, 2 * w + gap), np.nan, dtype=np.float32)
    both[:, :w] = image
    coloured = np.full_like(both, np.nan)
    coloured[:, w + gap :] = truth
    ys, xs = np.mgrid[0:h, 0:w]
    targets = {
        "type": "scatter",
        "mode": "markers",
        "x": np.concatenate([xs.ravel(), xs.ravel() + w + gap]),
        "y": np.concatenate([ys.ravel(), ys.ravel()]),
        "marker": {"size": 6, "opacity": 0},
        "hovertemplate": "row %{y}<extra>click to explain</extra>",
        "showlegend": False,
    }
    chosen = plot.markers([col, col + w + gap], [row, row], "explained pixel", size=14)
    chosen["marker"].update(symbol="x-thin", color="#d62728", line={"width": 3, "color": "#d62728"})
    data = [
        plot.heatmap(both, "Greys", showscale=False, reversescale=True, hoverinfo="skip"),
        mask_trace(coloured, classes, hoverinfo="skip"),
        targets,
        chosen,
    ]
    notes = [
        {"text": t, "x": x, "y": -1, "yanchor": "bottom", "showarrow": False}
        for t, x in (("test image", w / 2), ("true mask", w + gap + w / 2))
    ]
    fig = plot.figure(data, "", 300, legend=False, annotations=notes, dragmode=False)
    fig["layout"]["margin"] = {"l": 5, "r": 5, "t": 30, "b": 5}
    return plot.image_axes(fig)


def pixel_attribution_figure(image: np.ndarray, maps: dict[str, np.ndarray], row: int, col: int) -> dict:
    """The image and each net's Integrated Gradients map, the explained pixel marked on each."""
    fig = images.attribution_grid_figure(image, maps)
    for i in range(len(maps) + 1):
        axis = "" if i == 0 else str(i + 1)
        mark = plot.markers([col], [row], "explained pixel", size=10)
        mark["marker"].update(symbol="x-thin", color="#d62728", line={"width": 2, "color": "#d62728"})
        fig["data"].append({**mark, "xaxis": f"x{axis}", "yaxis": f"y{axis}", "showlegend": False})
    return fig


def probabilities_figure(probs: dict[str, np.ndarray], classes) -> dict:
    """Each net's class probabilities at the explained pixel, grouped by class."""
    data = [
        plot.bar(classes, np.asarray(p, dtype=float).tolist(), plot.colour(i), name=name)
        for i, (name, p) in enumerate(probs.items())
    ]
    return plot.figure(
        data, "class probabilities at that pixel", 260, yaxis={"range": [0, 1]}, barmode="group"
    )


def confusion_share(counts: np.ndarray) -> np.ndarray:
    """Each true class's pixels, in % by predicted class (rows sum to 100)."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.round(100 * counts / np.maximum(counts.sum(1, keepdims=True), 1)).astype(int)


def confusion_figure(counts: np.ndarray, classes, name: str) -> dict:
    """Rows: true class; columns: predicted; each cell the % of its row's pixels. Numeric axes
    with fixed ranges and class names as tick labels: a categorical axis, redrawn live by
    Plotly.react, kept the range of an earlier frame and hid columns."""
    share = confusion_share(counts)
    n = len(classes)
    trace = plot.heatmap(share, "Blues", showscale=False, zmin=0, zmax=100, text=share.tolist())
    pairs = [[f"true {a}, predicted {b}" for b in classes] for a in classes]
    trace.update(
        texttemplate="%{text}", customdata=pairs, hovertemplate="%{customdata}: %{z}%<extra></extra>"
    )
    ticks = {"tickvals": list(range(n)), "ticktext": list(classes), "range": [-0.5, n - 0.5]}
    return plot.figure(
        [trace],
        f"{name}: % of each true class's pixels, by predicted class",
        320,
        legend=False,
        xaxis={"title": "predicted", **ticks},
        yaxis={"title": "true", **ticks, "range": [n - 0.5, -0.5]},
    )


def draw(run, classes=("background", "circle", "square", "triangle")) -> dict:
    infos = compare.variants(run)
    names = list(infos)
    if not names:  # the first update has masks and no IoU yet: draw it anyway, at once
        return {}
    parts = {
        NUMBERS: [
            [f"{n}: {m}", _number(run.last(metric(n, m)))]
            for n in names
            for m in ("boundary IoU", "mean IoU")
        ],
        "edges": compare.compare_curves_figure(
            run,
            names,
            ["boundary IoU", "mean IoU"],
            "IoU on the 2-pixel edge band (solid), over all pixels (dashed)",
        ),
        "classes": compare.compare_curves_figure(
            run, names, [f"IoU {c}" for c in classes[1:]], "IoU per class: circle, square, triangle"
        ),
        "loss": compare.compare_curves_figure(
            run, names, ["train_loss"], "training loss (cross-entropy + Dice)", log_y=True
        ),
    }
    for name, rows in (("edges", 2), ("classes", 3)):  # room for a legend that wraps in a narrow cell
        parts[name]["layout"]["margin"]["t"] = 34 + 22 * rows
        parts[name]["layout"]["height"] += 22 * (rows - 1)
    shown = {n: i["masks"] for n, i in infos.items() if "masks" in i}
    first = next(iter(infos.values()))
    if shown and "images" in first and "truth" in first:
        parts["masks"] = masks_figure(first["images"], first["truth"], shown, classes)
    for name, info in infos.items():
        if "confusion" in info:
            parts[f"confusion: {name}"] = confusion_figure(info["confusion"], classes, name)
    return parts


def _number(value) -> str:
    return "–" if value is None else f"{value:.2f}"


VIEWS = Views(
    draw,
    (
        ((("masks",), 1.3), (("edges", "classes", "loss"), 1)),
        ("confusion: *",),
    ),
)
