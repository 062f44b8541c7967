"""Plain-dict plotly figures: one explicit template and a few small builders.

Every figure in the lab is a dict, `{"data": [...], "layout": {...}}`: it costs ~1/20 of a
`go.Figure` to build, goes to the browser as it is (the live panel draws it with
`Plotly.react`), and `st.plotly_chart` takes it too. Arrays may stay NumPy arrays: the live
channel sends them as base64 typed arrays, plotly.py's encoder as lists.

The template is explicit because importing streamlit sets plotly's default template to one
whose colours are placeholders that only `st.plotly_chart` fills in.
"""

from __future__ import annotations

import numpy as np
from plotly import colors

PALETTE = ("#4c78a8", "#e45756", "#54a24b", "#f58518", "#b279a2", "#72b7b2", "#eeca3b", "#9d755d")
DASHES = ("solid", "dash", "dot", "dashdot")
# Colour scales as explicit lists: plotly.js and plotly.py disagree on some names ("RdBu" runs
# blue to red in plotly.js, red to blue in plotly.py), and figures go to both.
SCALES = {
    name: colors.make_colorscale(scale)
    for name, scale in {
        "RdBu": colors.diverging.RdBu,  # low red, high blue: Captum's signed maps
        "Viridis": colors.sequential.Viridis,
        "Blues": colors.sequential.Blues,
        "Greys": colors.sequential.Greys,  # white to black
    }.items()
}
DIVERGING = "RdBu"
MAX_POINTS = 1000  # a curve drawn with more points than this is thinned (the last one kept)
GRID = "#e8ebf0"

_AXIS = {"gridcolor": GRID, "linecolor": "#c7ccd4", "zerolinecolor": "#c7ccd4", "automargin": True}
TEMPLATE = {
    "layout": {
        "colorway": list(PALETTE),
        "font": {"family": '"Source Sans Pro", "Source Sans 3", sans-serif', "size": 13, "color": "#31333f"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "xaxis": _AXIS,
        "yaxis": _AXIS,
        "hoverlabel": {"font": {"size": 12}},
        "coloraxis": {"colorbar": {"thickness": 12}},
    }
}
# Title top left, horizontal legend just above the plot: a legend below the plot (plotly's
# default for horizontal ones) sits on the x-axis title.
TITLE = {"x": 0.01, "xanchor": "left", "y": 0.98, "yanchor": "top", "yref": "container", "font": {"size": 14}}
LEGEND = {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.0, "yanchor": "bottom", "font": {"size": 12}}


NOTHING = {"type": "scatter", "x": [], "y": [], "showlegend": False, "hoverinfo": "skip"}


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def figure(data: list[dict], title: str = "", height: int = 300, legend: bool = True, **layout) -> dict:
    """A figure dict with the lab's template, title and legend placement."""
    top = (34 if title else 8) + (26 if legend else 0)
    base = {
        "template": TEMPLATE,
        "height": height,
        "margin": {"l": 10, "r": 10, "t": top, "b": 10},
        "title": {**TITLE, "text": title},
        "showlegend": legend,
        "legend": LEGEND,
    }
    # an invisible trace where there is none: st.plotly_chart refuses a figure without data
    return {"data": data or [NOTHING], "layout": {**base, **layout}}


def thin(xs, ys, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """Every k-th point, always keeping the last, so long histories draw as fast as short ones."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    stride = -(-n // max_points)
    keep = list(range(0, n, stride))
    if keep[-1] != n - 1:
        keep.append(n - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]


def line(
    x, y, name: str = "", color=None, dash: str = "solid", width: float = 2, shape="linear", **kw
) -> dict:
    style = {"dash": dash, "width": width, "shape": shape} | ({"color": color} if color else {})
    return {"type": "scatter", "mode": "lines", "x": x, "y": y, "name": name, "line": style, **kw}


def markers(x, y, name: str = "", size: float = 7, **kw) -> dict:
    return {
        "type": "scatter",
        "mode": "markers",
        "x": x,
        "y": y,
        "name": name,
        "marker": {"size": size},
        **kw,
    }


def scale(name: str) -> list:
    """A named colour scale as the explicit list both renderers read the same way."""
    return SCALES[name]


def heatmap(z, colorscale: str = "Viridis", showscale: bool = True, **kw) -> dict:
    return {
        "type": "heatmap",
        "z": np.asarray(z, dtype=np.float32),
        "colorscale": scale(colorscale),
        "showscale": showscale,
        "hoverongaps": False,
        **kw,
    }


def table(rows: list[dict], columns, title: str, first_width: float = 2.2, row_height: int = 26) -> dict:
    """A table figure: `columns` are (key, header, format) and each row a dict holding the keys;
    the first column (names) is `first_width` times as wide as the others."""
    cells = [[fmt.format(r[key]) for r in rows] for key, _, fmt in columns]
    trace = {
        "type": "table",
        "columnwidth": [first_width] + [1] * (len(columns) - 1),
        "header": {"values": [head for _, head, _ in columns], "fill": {"color": "#eef1f5"}, "align": "left"},
        "cells": {"values": cells, "align": "left", "height": row_height},
    }
    return figure([trace], title, 90 + (row_height + 2) * len(rows), legend=False)


def bar(x, y, color=None, **kw) -> dict:
    trace = {"type": "bar", "x": list(x), "y": y}
    if color is not None:
        trace["marker"] = {"color": color}
    return {**trace, **kw}


LOG_TICKS_MAX = 8  # labelled powers of ten on a log axis: past that they crowd each other


def log_axis(*values, **kw) -> dict:
    """A log axis with ticks a learner can read: one per power of ten (10⁻⁸ … 1) when the
    `values` drawn on it span a decade or more, never a row of "1"s or stray "2 5" digits;
    one every 2, 5, 10… decades when they span more than LOG_TICKS_MAX (a loss surface's
    heights can span thirty)."""
    axis = {"type": "log", "exponentformat": "power", "showexponent": "all", "minexponent": 0, **kw}
    flat = (
        np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in values]) if values else np.ones(1)
    )
    positive = flat[np.isfinite(flat) & (flat > 0)]
    if positive.size and positive.max() >= 10 * positive.min():
        decades = np.log10(positive.max()) - np.log10(positive.min())
        axis["dtick"] = next(step for step in (1, 2, 5, 10, 20, 50, 100) if decades / step <= LOG_TICKS_MAX)
    return axis


def hline(y: float, text: str = "", color: str = "grey", dash: str = "dot") -> tuple[dict, dict | None]:
    """A horizontal rule across the plot, and its label at the right end: (shape, note or None)."""
    return _rule("y", y, text, color, dash, {"x": 1, "xanchor": "right", "yanchor": "bottom"})


def vline(x: float, text: str = "", color: str = "grey", dash: str = "dot") -> tuple[dict, dict | None]:
    """A vertical rule up the plot, and its label at the top."""
    return _rule("x", x, text, color, dash, {"y": 1, "yanchor": "bottom", "font": {"size": 11}})


def _rule(axis: str, at: float, text: str, color: str, dash: str, placed: dict) -> tuple[dict, dict | None]:
    across = "x" if axis == "y" else "y"  # the rule spans the other axis, in paper coordinates
    shape = {
        "type": "line",
        f"{across}ref": "paper",
        f"{across}0": 0,
        f"{across}1": 1,
        f"{axis}0": at,
        f"{axis}1": at,
        "line": {"color": color, "dash": dash},
    }
    note = {"text": text, f"{across}ref": "paper", axis: at, "showarrow": False, **placed} if text else None
    return shape, note


def subtitles(*titles: tuple[str, float], size: int = 12) -> list[dict]:
    """Titles above the panels of a figure whose axes were placed by hand: (text, left edge)."""
    return [
        {
            "text": text,
            "x": x,
            "xanchor": "left",
            "y": 1.0,
            "yanchor": "bottom",
            "xref": "paper",
            "yref": "paper",
            "showarrow": False,
            "font": {"size": size},
        }
        for text, x in titles
    ]


def with_marks(fig: dict, *marks: tuple[dict, dict | None]) -> dict:
    """Add rules made by `hline`/`vline` (and their labels) to a figure."""
    layout = fig["layout"]
    layout["shapes"] = layout.get("shapes", []) + [shape for shape, _ in marks]
    layout["annotations"] = layout.get("annotations", []) + [note for _, note in marks if note]
    return fig


def image_axes(fig: dict, **kw) -> dict:
    """Pictures: no axes, row 0 on top, square pixels."""
    layout = fig["layout"]
    layout["xaxis"] = {"visible": False, **layout.get("xaxis", {})}
    layout["yaxis"] = {
        "visible": False,
        "autorange": "reversed",
        "scaleanchor": "x",
        **layout.get("yaxis", {}),
        **kw,
    }
    return fig


def empty(text: str, height: int = 120) -> dict:
    """A figure that says why there is nothing to draw yet."""
    return figure(
        [],
        height=height,
        legend=False,
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[
            {"text": text, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}
        ],
    )
