"""Pictures from arrays: mosaics of small maps (filters, feature maps, hidden units), the
decision boundary, confusion matrix, mistakes, and Captum attribution side by side."""

from __future__ import annotations

import numpy as np

from figures import plot

DIVERGING = plot.DIVERGING
CLASS_COLORS = [[0, "#b2182b"], [1, "#1f4e99"]]  # class 0 red, class 1 blue


def mosaic(tiles: np.ndarray, cols: int, normalize: bool = True, pad: int = 1) -> np.ndarray:
    """Lay (n, h, w) tiles out in a grid with NaN gutters: one heatmap draws them all, far
    faster in the browser than one subplot per tile. Each tile is scaled to [-1, 1]."""
    n, h, w = tiles.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan, dtype=np.float32)
    for i, tile in enumerate(tiles):
        if normalize:
            tile = tile / (np.abs(tile).max() + 1e-8)
        r, c = divmod(i, cols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tile
    return out


def mosaic_figure(
    tiles: np.ndarray, cols: int, title: str = "", height: int = 260, colorscale: str = DIVERGING
):
    z = mosaic(np.asarray(tiles), cols)
    trace = plot.heatmap(z, colorscale, showscale=False, zmin=-1, zmax=1)
    return plot.image_axes(plot.figure([trace], title, height, legend=False))


def image_figure(image: np.ndarray, title: str = "", height: int = 220) -> dict:
    trace = plot.heatmap(image, "Greys", showscale=False, reversescale=True)
    return plot.image_axes(plot.figure([trace], title, height, legend=False))


def decision_boundary_figure(
    probs: np.ndarray, extent: float, X_train, y_train, X_test, y_test, selected=None, title: str = ""
) -> dict:
    """P(class 1) over the plane with the 0.5 contour; training points filled, test hollow."""
    axis = np.linspace(-extent, extent, probs.shape[0], dtype=np.float32)
    data = [
        plot.heatmap(
            probs,
            DIVERGING,
            x=axis,
            y=axis,
            zmin=0,
            zmax=1,
            opacity=0.75,
            colorbar={"title": {"text": "P(blue)"}, "len": 0.8},
        ),
        {
            "type": "contour",
            "x": axis,
            "y": axis,
            "z": np.asarray(probs, dtype=np.float32),
            "name": "P = 0.5",
            "contours": {"start": 0.5, "end": 0.5, "coloring": "none"},
            "line": {"color": "black", "width": 2},
            "showscale": False,
            "hoverinfo": "skip",
        },
    ]
    return _on_the_plane(data, extent, (X_train, y_train), (X_test, y_test), CLASS_COLORS, selected, title)


def _on_the_plane(data: list, extent: float, train, test, point_scale: list, selected, title: str) -> dict:
    """`data` (what covers the plane) with the points over it, training filled, test hollow,
    coloured by class through `point_scale` (numeric colours through a scale: far cheaper than
    one colour string per point), and the point explained."""
    top = len(point_scale) - 1  # the last class
    for name, (X, y), symbol in (("train", train, "circle"), ("test", test, "circle-open")):
        edge = {"width": 1, "color": "white"} if symbol == "circle" else {"width": 1.5}
        marker = {"symbol": symbol, "size": 7, "color": y, "colorscale": point_scale, "line": edge}
        data.append(plot.markers(X[:, 0], X[:, 1], name, marker=marker | {"cmin": 0, "cmax": top}))
    if selected is not None:
        marker = {"symbol": "x", "size": 16, "color": "gold", "line": {"width": 2}}
        data.append(plot.markers([selected[0]], [selected[1]], "explained", marker=marker))
    return plot.figure(
        data,
        title,
        430,
        xaxis={"range": [-extent, extent], "constrain": "domain"},
        yaxis={"range": [-extent, extent], "scaleanchor": "x", "constrain": "domain"},
    )


# The multi-class sets' colours: red and blue as for two classes, then green, orange, purple
CLASS_PALETTE = ("#b2182b", "#1f4e99", "#1a9850", "#e08214", "#7b3294")
CLASS_NAMES = ("red", "blue", "green", "orange", "purple")


def _lighter(hex_colour: str, share: float) -> str:
    """The colour mixed with `share` of white."""
    rgb = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * share):02x}" for c in rgb)


def class_regions_figure(
    probs: np.ndarray, extent: float, X_train, y_train, X_test, y_test, selected=None, title: str = ""
) -> dict:
    """A softmax over the plane: each cell coloured by the class it picks, pale where that
    class barely wins and deep where the net is sure; training points filled, test hollow.

    probs: (classes, G, G), rows along y. One heatmap of z = class + confidence in [0, 1)
    under a scale of one pale-to-deep band per class: far cheaper than an image per frame."""
    k = probs.shape[0]
    top = probs.max(0)
    confidence = np.clip((top - 1 / k) / (1 - 1 / k), 0, 0.999)  # 0 at a tie, 1 when sure
    z = (probs.argmax(0) + confidence).astype(np.float32)
    scale = []
    for c, colour in enumerate(CLASS_PALETTE[:k]):
        scale += [[c / k, _lighter(colour, 0.9)], [(c + 1) / k, _lighter(colour, 0.25)]]
    axis = np.linspace(-extent, extent, probs.shape[1], dtype=np.float32)
    data = [
        {
            "type": "heatmap", "x": axis, "y": axis, "z": z, "zmin": 0, "zmax": k,
            "colorscale": scale, "showscale": False, "hoverinfo": "skip",
        }
    ]  # fmt: skip
    point_scale = [[c / (k - 1), colour] for c, colour in enumerate(CLASS_PALETTE[:k])]
    return _on_the_plane(data, extent, (X_train, y_train), (X_test, y_test), point_scale, selected, title)


def class_bars_figure(values: np.ndarray, title: str, signed: bool = False) -> dict:
    """One bar per class in its colour (a single logit: one grey bar)."""
    names = [CLASS_NAMES[c] for c in range(len(values))] if len(values) > 1 else ["logit"]
    colours = list(CLASS_PALETTE[: len(values)]) if len(values) > 1 else ["#777777"]
    yaxis = {"zeroline": True} if signed else {"range": [0, 1]}
    bars = [plot.bar(names, values, colours)]
    return plot.figure(bars, title, 240, legend=False, xaxis={"type": "category"}, yaxis=yaxis)


def confusion_figure(matrix: np.ndarray, classes) -> dict:
    labels = [str(c) for c in classes]
    trace = plot.heatmap(
        matrix,
        "Blues",
        showscale=False,
        x=labels,
        y=labels,
        text=np.asarray(matrix).tolist(),
        texttemplate="%{text}",
    )
    return plot.figure(
        [trace],
        "confusion: true class (rows) against predicted",
        360,
        legend=False,
        xaxis={"title": "predicted", "type": "category"},
        yaxis={"title": "true", "autorange": "reversed", "type": "category"},
    )


def labelled_images_figure(images: np.ndarray, titles: list[str], cols: int = 6, pad: int = 6) -> dict:
    """Small greyscale images, each with a title (the most confident mistakes): one heatmap
    with gutters, titles as annotations, instead of one subplot per image."""
    images = np.asarray(images)
    n, h, w = images.shape
    rows = max(1, -(-n // cols))
    top = 6  # room for each title above its image, in pixel rows
    canvas = np.full((rows * (h + top + pad), cols * (w + pad) - pad), np.nan, dtype=np.float32)
    notes = []
    for i, (img, text) in enumerate(zip(images, titles)):
        r, c = divmod(i, cols)
        y0, x0 = r * (h + top + pad) + top, c * (w + pad)
        canvas[y0 : y0 + h, x0 : x0 + w] = img
        notes.append(
            {
                "text": text,
                "x": x0 + w / 2,
                "y": y0 - 1,
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 11},
            }
        )
    trace = plot.heatmap(canvas, "Greys", showscale=False, reversescale=True)
    fig = plot.figure([trace], "", 150 * rows + 20, legend=False, annotations=notes)
    return plot.image_axes(fig)


def attribution_grid_figure(image: np.ndarray, maps: dict[str, np.ndarray]) -> dict:
    """The input, then each method's signed, Captum-normalized map in [-1, 1], side by side on
    axes placed by hand."""
    titles = ["input", *maps]
    width = 1 / len(titles)
    data, layout = [], {}
    for i, z in enumerate([image, *maps.values()]):
        axis = "" if i == 0 else str(i + 1)
        trace = plot.heatmap(z, "Greys" if i == 0 else DIVERGING, showscale=i == len(titles) - 1)
        if i == 0:
            trace["reversescale"] = True
        else:
            trace.update(zmin=-1, zmax=1)
        data.append({**trace, "xaxis": f"x{axis}", "yaxis": f"y{axis}"})
        domain = [i * width + 0.01, (i + 1) * width - 0.01]
        layout[f"xaxis{axis}"] = {"domain": domain, "visible": False, "anchor": f"y{axis}"}
        layout[f"yaxis{axis}"] = {
            "visible": False,
            "autorange": "reversed",
            "scaleanchor": f"x{axis}",
            "anchor": f"x{axis}",
        }
    notes = [
        {
            "text": t,
            "x": (i + 0.5) * width,
            "y": 1.0,
            "xref": "paper",
            "yref": "paper",
            "yanchor": "bottom",
            "showarrow": False,
        }
        for i, t in enumerate(titles)
    ]
    return plot.figure(
        data, "", 280, legend=False, annotations=notes, margin={"l": 5, "r": 5, "t": 30, "b": 5}, **layout
    )


def map_grid_figure(
    grid: list[list[np.ndarray]],
    row_titles: list[str],
    col_titles: list[str],
    kinds: tuple[str, ...] = ("image",),
    title: str = "",
    cell_px: int = 84,
) -> dict:
    """Rows of equally sized pictures: a column whose kind is "image" (default: the first) is
    drawn grey, 0 to 1; every other column is a signed map in [-1, 1] (red against, blue for).
    Two heatmaps on one pair of axes, gutters as NaN: one chart for dozens of maps."""
    h, w = np.asarray(grid[0][0]).shape
    pad, n_rows, n_cols = 2, len(grid), len(col_titles)
    shape = (n_rows * (h + pad) - pad, n_cols * (w + pad) - pad)
    grey, signed = np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32)
    for r, row in enumerate(grid):
        for c, tile in enumerate(row):
            kind = kinds[c] if c < len(kinds) else "map"
            target = grey if kind == "image" else signed
            target[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tile
    data = [
        {**plot.heatmap(grey, "Greys", showscale=False, zmin=0, zmax=1), "reversescale": True},
        plot.heatmap(signed, DIVERGING, showscale=False, zmin=-1, zmax=1),
    ]
    notes = [
        {
            "text": t,
            "x": c * (w + pad) + w / 2,
            "y": -1,
            "yanchor": "bottom",
            "showarrow": False,
            "font": {"size": 11 if cell_px >= 80 else 9},  # small cells: titles must not touch
        }
        for c, t in enumerate(col_titles)
    ] + [
        {
            "text": t,
            "x": -1,
            "y": r * (h + pad) + h / 2,
            "xanchor": "right",
            "showarrow": False,
            "font": {"size": 11},
        }
        for r, t in enumerate(row_titles)
    ]
    left = 8 + 6 * max((len(t) for t in row_titles), default=0)
    fig = plot.figure(
        data,
        title,
        cell_px * n_rows + 60,
        legend=False,
        annotations=notes,
        margin={"l": left, "r": 5, "t": 50 if title else 30, "b": 5},
    )
    return plot.image_axes(fig)


def feature_bar_figure(names: list[str], values: np.ndarray, title: str) -> dict:
    colors = ["#1f4e99" if v >= 0 else "#b2182b" for v in values]
    return plot.figure(
        [plot.bar(names, values, colors)], title, 300, legend=False, xaxis={"type": "category"}
    )


def example() -> dict:
    return mosaic_figure(np.random.default_rng(0).normal(size=(8, 5, 5)), cols=4, title="filters")
