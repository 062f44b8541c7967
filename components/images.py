"""Pictures from arrays: mosaics of small maps (filters, feature maps, hidden units), the
decision boundary, confusion matrix, mistakes, and Captum attribution side by side."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

DIVERGING = "RdBu"
CLASS_COLORS = [
    [0, "#b2182b"],
    [1, "#1f4e99"],
]  # class 0 red, class 1 blue  # negative red, positive blue, as Captum's signed maps


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


def _image_layout(fig: go.Figure, height: int, title: str = "", top: int = 5) -> go.Figure:
    """Images without axes, row 0 on top; `top` leaves room for subplot titles."""
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(title=title, height=height, margin=dict(l=5, r=5, t=max(top, 35 if title else 5), b=5))
    return fig


def mosaic_figure(
    tiles: np.ndarray, cols: int, title: str = "", height: int = 260, colorscale: str = DIVERGING
) -> go.Figure:
    z = mosaic(np.asarray(tiles), cols)
    fig = go.Figure(
        go.Heatmap(z=z, colorscale=colorscale, zmin=-1, zmax=1, showscale=False, hoverongaps=False)
    )
    return _image_layout(fig, height, title)


def image_figure(image: np.ndarray, title: str = "", height: int = 220) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=image, colorscale="Greys", reversescale=True, showscale=False))
    return _image_layout(fig, height, title)


def decision_boundary_figure(
    probs: np.ndarray,
    extent: float,
    X_train,
    y_train,
    X_test,
    y_test,
    selected: tuple[float, float] | None = None,
) -> go.Figure:
    """P(class 1) over the plane with the 0.5 contour; training points filled, test hollow."""
    axis = np.linspace(-extent, extent, probs.shape[0])
    fig = go.Figure(
        go.Heatmap(
            x=axis,
            y=axis,
            z=probs,
            colorscale=DIVERGING,
            zmin=0,
            zmax=1,
            opacity=0.75,
            colorbar=dict(title="P(blue)", len=0.8),
        )
    )
    fig.add_trace(
        go.Contour(
            x=axis,
            y=axis,
            z=probs,
            name="P = 0.5",
            contours=dict(start=0.5, end=0.5, coloring="none"),
            line=dict(color="black", width=2),
            showscale=False,
            hoverinfo="skip",
        )
    )
    for name, X, y, symbol in (
        ("train", X_train, y_train, "circle"),
        ("test", X_test, y_test, "circle-open"),
    ):
        # numeric colours through a two-colour scale: plotly validates numbers far faster than
        # one colour string per point (this figure is rebuilt at every live tick)
        edge = dict(width=1, color="white" if symbol == "circle" else None)
        fig.add_trace(
            go.Scatter(
                x=X[:, 0],
                y=X[:, 1],
                mode="markers",
                name=name,
                marker=dict(
                    symbol=symbol, size=7, color=y, colorscale=CLASS_COLORS, cmin=0, cmax=1, line=edge
                ),
            )
        )
    if selected is not None:
        fig.add_trace(
            go.Scatter(
                x=[selected[0]],
                y=[selected[1]],
                mode="markers",
                name="explained",
                marker=dict(symbol="x", size=16, color="gold", line=dict(width=2)),
            )
        )
    fig.update_layout(
        height=430,
        margin=dict(l=10, r=10, t=10, b=10),
        legend=dict(orientation="h"),
        xaxis=dict(range=[-extent, extent]),
        yaxis=dict(range=[-extent, extent], scaleanchor="x"),
    )
    return fig


def confusion_figure(matrix: np.ndarray, classes) -> go.Figure:
    labels = [str(c) for c in classes]
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=labels,
            y=labels,
            colorscale="Blues",
            text=matrix,
            texttemplate="%{text}",
            showscale=False,
        )
    )
    fig.update_layout(
        height=360,
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
        margin=dict(l=10, r=10, t=10, b=10),
    )
    return fig


def labelled_images_figure(images: np.ndarray, titles: list[str], cols: int = 6) -> go.Figure:
    """Small greyscale images, each with a title (the most confident mistakes)."""
    rows = max(1, -(-len(images) // cols))
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.12
    )
    for i, img in enumerate(images):
        fig.add_trace(
            go.Heatmap(z=img, colorscale="Greys", reversescale=True, showscale=False),
            row=i // cols + 1,
            col=i % cols + 1,
        )
    fig.update_annotations(font_size=11)
    return _image_layout(fig, 150 * rows + 40, top=30)


def attribution_grid_figure(image: np.ndarray, maps: dict[str, np.ndarray]) -> go.Figure:
    """The input, then each method's signed, Captum-normalized map in [-1, 1]."""
    titles = ["input"] + list(maps)
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.02)
    fig.add_trace(go.Heatmap(z=image, colorscale="Greys", reversescale=True, showscale=False), 1, 1)
    for i, m in enumerate(maps.values(), start=2):
        fig.add_trace(
            go.Heatmap(z=m, colorscale=DIVERGING, zmin=-1, zmax=1, showscale=i == len(titles)), 1, i
        )
    return _image_layout(fig, 280, top=30)


def feature_bar_figure(names: list[str], values: np.ndarray, title: str) -> go.Figure:
    colors = ["#1f4e99" if v >= 0 else "#b2182b" for v in values]
    fig = go.Figure(go.Bar(x=list(names), y=values, marker_color=colors))
    fig.update_layout(title=title, height=300, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def example() -> go.Figure:
    return mosaic_figure(np.random.default_rng(0).normal(size=(8, 5, 5)), cols=4, title="filters")
