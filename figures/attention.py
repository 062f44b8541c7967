"""Figures for chapter 14: attention maps per layer and head, positional encodings, accuracy by
length, and attribution beside attention. Arrays in, plain figure dicts out."""

from __future__ import annotations

import numpy as np

from figures import plot

colour = plot.colour


def attention_grid_figure(maps: np.ndarray, queries: list[str], keys: list[str], title: str) -> dict:
    """maps (layers, heads, queries, keys): one block per head, one row of blocks per layer.
    Rows of a block are the positions asking (queries), columns the positions looked at (keys).

    Drawn as one heatmap with blank gaps between blocks: eight subplots cost ~170 ms per live
    redraw, one heatmap ~10 ms."""
    n_layers, n_heads, nq, nk = maps.shape
    gap = 1
    grid = np.full((n_layers * (nq + gap) - gap, n_heads * (nk + gap) - gap), np.nan, dtype=np.float32)
    for i in range(n_layers):
        for h in range(n_heads):
            r, c = i * (nq + gap), h * (nk + gap)
            grid[r : r + nq, c : c + nk] = maps[i, h]
    xs = [h * (nk + gap) + k for h in range(n_heads) for k in range(nk)]
    ys = [i * (nq + gap) + q for i in range(n_layers) for q in range(nq)]
    trace = plot.heatmap(
        grid,
        zmin=0,
        zmax=1,
        colorbar={"thickness": 10, "title": {"text": "weight"}},
        hovertemplate="%{z:.2f}<extra></extra>",
    )
    labels = [
        {
            "text": f"layer {i + 1} · head {h + 1}",
            "x": h * (nk + gap) + (nk - 1) / 2,
            "y": i * (nq + gap) - 0.9,
            "showarrow": False,
            "font": {"size": 11},
        }
        for i in range(n_layers)
        for h in range(n_heads)
    ]
    return plot.figure(
        [trace],
        title,
        min(900, 140 + 150 * n_layers),
        legend=False,
        annotations=labels,
        xaxis={
            "tickvals": xs,
            "ticktext": keys * n_heads,
            "showticklabels": len(xs) <= 64,
            "tickangle": 0,
            "showgrid": False,
        },
        yaxis={
            "tickvals": ys,
            "ticktext": queries * n_layers,
            "autorange": "reversed",
            "showgrid": False,
            "scaleanchor": "x",
        },
    )


def positional_figure(pe: np.ndarray) -> dict:
    """The encoding added at each position (left) and how alike positions are (cosine, right):
    a bright band along the diagonal means neighbours look alike and far positions differ."""
    norms = np.linalg.norm(pe, axis=1, keepdims=True)
    cos = (pe @ pe.T) / np.maximum(norms * norms.T, 1e-12)
    data = [
        plot.heatmap(pe, "RdBu", showscale=False, zmid=0),
        plot.heatmap(cos, zmin=-1, zmax=1, colorbar={"thickness": 10}, xaxis="x2", yaxis="y2"),
    ]
    notes = plot.subtitles(("encoding: position × dimension", 0.0), ("cosine similarity of positions", 0.55))
    return plot.figure(
        data,
        "positional encodings",
        330,
        legend=False,
        annotations=notes,
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        xaxis={"domain": [0, 0.45], "title": "dimension"},
        yaxis={"autorange": "reversed", "title": "position"},
        xaxis2={"domain": [0.55, 1], "anchor": "y2", "title": "position"},
        yaxis2={"autorange": "reversed", "anchor": "x2"},
    )


def by_length_figure(
    lengths: list[int], curves: dict[str, list[float]], trained: tuple[int, int], height: int = 320
):
    """Whole-sequence accuracy at each length; the trained range shaded."""
    data = [
        plot.line(lengths, acc, name, color=colour(i), mode="lines+markers")
        for i, (name, acc) in enumerate(curves.items())
    ]
    shade = {
        "type": "rect",
        "xref": "x",
        "yref": "paper",
        "x0": trained[0] - 0.5,
        "x1": trained[1] + 0.5,
        "y0": 0,
        "y1": 1,
        "fillcolor": "grey",
        "opacity": 0.12,
        "line": {"width": 0},
    }
    return plot.figure(
        data,
        "sequences right, by length (shaded: trained)",
        height,
        xaxis={"title": "length"},
        yaxis={"range": [0, 1.05], "tickformat": ".0%"},
        shapes=[shade],
    )


def attribution_vs_attention_figure(
    attribution: np.ndarray, attention: np.ndarray, inputs: list[str], outputs: list[str]
) -> dict:
    """Left: Integrated Gradients of each output token to each input token (rows scaled to their
    own largest |value|, signed). Right: the last layer's cross-attention, mean over heads."""
    scaled = attribution / np.maximum(np.abs(attribution).max(axis=1, keepdims=True), 1e-12)
    x, y = list(range(len(inputs))), list(range(len(outputs)))
    data = [
        plot.heatmap(scaled, "RdBu", x=x, y=y, zmin=-1, zmax=1, colorbar={"x": 0.45, "thickness": 10}),
        plot.heatmap(attention, x=x, y=y, zmin=0, zmax=1, colorbar={"thickness": 10}, xaxis="x2", yaxis="y2"),
    ]
    ticks_x = {"tickvals": x, "ticktext": inputs, "title": "input"}
    ticks_y = {"tickvals": y, "ticktext": outputs, "autorange": "reversed"}
    notes = plot.subtitles(
        ("Captum IG: what each output depended on", 0.0), ("cross-attention: where it looked", 0.55)
    )
    return plot.figure(
        data,
        "",
        360,
        legend=False,
        annotations=notes,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"domain": [0, 0.42], **ticks_x},
        yaxis={**ticks_y, "title": "output"},
        xaxis2={"domain": [0.55, 1], "anchor": "y2", **ticks_x},
        yaxis2={"anchor": "x2", **ticks_y},
    )


def example() -> dict:
    n = 6
    anti = np.eye(n)[::-1][None, None].repeat(2, 0).repeat(2, 1)
    return attention_grid_figure(anti, list("314159"), list("951413"), "reversal")
