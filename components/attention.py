"""Figures for chapter 14: attention maps per layer and head, positional encodings, accuracy by
length, and attribution beside attention. Arrays in, plotly figures out."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from components.compare import colour

MARGIN = dict(l=10, r=10, t=50, b=10)


def attention_grid_figure(maps: np.ndarray, queries: list[str], keys: list[str], title: str) -> go.Figure:
    """maps (layers, heads, queries, keys): one block per head, one row of blocks per layer.
    Rows of a block are the positions asking (queries), columns the positions looked at (keys).

    Drawn as one heatmap with blank gaps between blocks: eight make_subplots panels cost
    ~170 ms per live redraw, one heatmap ~10 ms."""
    n_layers, n_heads, nq, nk = maps.shape
    gap = 1
    grid = np.full((n_layers * (nq + gap) - gap, n_heads * (nk + gap) - gap), np.nan)
    for i in range(n_layers):
        for h in range(n_heads):
            r, c = i * (nq + gap), h * (nk + gap)
            grid[r : r + nq, c : c + nk] = maps[i, h]
    xs = [h * (nk + gap) + k for h in range(n_heads) for k in range(nk)]
    ys = [i * (nq + gap) + q for i in range(n_layers) for q in range(nq)]
    fig = go.Figure(
        go.Heatmap(
            z=grid,
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            colorbar=dict(thickness=10, title="weight"),
            hoverongaps=False,
            hovertemplate="%{z:.2f}<extra></extra>",
        )
    )
    labels = [
        dict(
            text=f"layer {i + 1} · head {h + 1}",
            x=h * (nk + gap) + (nk - 1) / 2,
            y=i * (nq + gap) - 0.9,
            showarrow=False,
            font_size=11,
        )
        for i in range(n_layers)
        for h in range(n_heads)
    ]
    fig.update_xaxes(
        tickvals=xs, ticktext=keys * n_heads, showticklabels=len(xs) <= 64, tickangle=0, showgrid=False
    )
    fig.update_yaxes(
        tickvals=ys, ticktext=queries * n_layers, autorange="reversed", showgrid=False, scaleanchor="x"
    )
    fig.update_layout(
        title=dict(text=title, font_size=13),
        height=min(900, 140 + 150 * n_layers),
        margin=MARGIN,
        annotations=labels,
        plot_bgcolor="white",
    )
    return fig


def positional_figure(pe: np.ndarray) -> go.Figure:
    """The encoding added at each position (left) and how alike positions are (cosine, right):
    a bright band along the diagonal means neighbours look alike and far positions differ.
    Two axes placed by hand: make_subplots costs tens of ms per live redraw."""
    norms = np.linalg.norm(pe, axis=1, keepdims=True)
    cos = (pe @ pe.T) / np.maximum(norms * norms.T, 1e-12)
    fig = go.Figure(
        [
            go.Heatmap(z=pe, colorscale="RdBu", zmid=0, showscale=False),
            go.Heatmap(
                z=cos,
                colorscale="Viridis",
                zmin=-1,
                zmax=1,
                colorbar=dict(thickness=10),
                xaxis="x2",
                yaxis="y2",
            ),
        ]
    )
    fig.update_layout(
        height=330,
        margin=MARGIN,
        title=dict(text="positional encodings", font_size=13),
        xaxis=dict(domain=[0, 0.45], title="dimension"),
        yaxis=dict(autorange="reversed", title="position"),
        xaxis2=dict(domain=[0.55, 1], anchor="y2", title="position"),
        yaxis2=dict(autorange="reversed", anchor="x2"),
        annotations=[
            dict(text=t, x=x, y=1.08, xref="paper", yref="paper", showarrow=False, font_size=12)
            for t, x in (("encoding: position × dimension", 0.22), ("cosine similarity of positions", 0.78))
        ],
    )
    return fig


def by_length_figure(
    lengths: list[int], curves: dict[str, list[float]], trained: tuple[int, int], height: int = 320
) -> go.Figure:
    """Whole-sequence accuracy at each length; the trained range shaded."""
    fig = go.Figure()
    fig.add_vrect(x0=trained[0] - 0.5, x1=trained[1] + 0.5, fillcolor="grey", opacity=0.12, line_width=0)
    for i, (name, acc) in enumerate(curves.items()):
        fig.add_trace(
            go.Scatter(x=lengths, y=acc, name=name, mode="lines+markers", line=dict(color=colour(i)))
        )
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    fig.update_layout(
        title=dict(text="sequences right, by length (shaded: trained)", font_size=13),
        height=height,
        margin=MARGIN,
        xaxis_title="length",
        legend=dict(orientation="h"),
    )
    return fig


def attribution_vs_attention_figure(
    attribution: np.ndarray, attention: np.ndarray, inputs: list[str], outputs: list[str]
) -> go.Figure:
    """Left: Integrated Gradients of each output token to each input token (rows scaled to their
    own largest |value|, signed). Right: the last layer's cross-attention, mean over heads."""
    fig = make_subplots(
        1, 2, subplot_titles=["Captum IG: what each output depended on", "cross-attention: where it looked"]
    )
    x, y = list(range(len(inputs))), list(range(len(outputs)))
    scaled = attribution / np.maximum(np.abs(attribution).max(axis=1, keepdims=True), 1e-12)
    fig.add_trace(
        go.Heatmap(
            z=scaled, x=x, y=y, colorscale="RdBu", zmin=-1, zmax=1, colorbar=dict(x=0.45, thickness=10)
        ),
        1,
        1,
    )
    fig.add_trace(
        go.Heatmap(z=attention, x=x, y=y, colorscale="Viridis", zmin=0, zmax=1, colorbar=dict(thickness=10)),
        1,
        2,
    )
    fig.update_yaxes(autorange="reversed", tickvals=y, ticktext=outputs)
    fig.update_yaxes(title_text="output", col=1)
    fig.update_xaxes(title_text="input", tickvals=x, ticktext=inputs)
    fig.update_layout(height=360, margin=MARGIN)
    return fig


def example() -> go.Figure:
    n = 6
    anti = np.eye(n)[::-1][None, None].repeat(2, 0).repeat(2, 1)
    return attention_grid_figure(anti, list("314159"), list("951413"), "reversal")
