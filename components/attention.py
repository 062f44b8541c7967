"""Figures for chapter 14: attention maps per layer and head, positional encodings, accuracy by
length, and attribution beside attention. Arrays in, plotly figures out."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from components.compare import colour

MARGIN = dict(l=10, r=10, t=50, b=10)


def attention_grid_figure(maps: np.ndarray, queries: list[str], keys: list[str], title: str) -> go.Figure:
    """maps (layers, heads, queries, keys): one small heatmap per head, one row per layer.
    Rows are the positions asking (queries), columns the positions looked at (keys)."""
    n_layers, n_heads = maps.shape[:2]
    fig = make_subplots(
        n_layers,
        n_heads,
        subplot_titles=[f"layer {i + 1} · head {h + 1}" for i in range(n_layers) for h in range(n_heads)],
        horizontal_spacing=0.02,
        vertical_spacing=0.08,
    )
    x, y = list(range(len(keys))), list(range(len(queries)))  # positions; tokens as tick text
    for i in range(n_layers):
        for h in range(n_heads):
            fig.add_trace(
                go.Heatmap(
                    z=maps[i, h],
                    x=x,
                    y=y,
                    zmin=0,
                    zmax=1,
                    colorscale="Viridis",
                    showscale=i == 0 and h == 0,
                    colorbar=dict(thickness=10, title="weight"),
                    hovertemplate="query %{y} → key %{x}: %{z:.2f}<extra></extra>",
                ),
                i + 1,
                h + 1,
            )
    fig.update_yaxes(autorange="reversed", showticklabels=False, tickvals=y, ticktext=queries)
    fig.update_yaxes(showticklabels=True, col=1)
    fig.update_xaxes(showticklabels=n_heads * len(keys) <= 64, tickangle=0, tickvals=x, ticktext=keys)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=dict(text=title, font_size=13), height=120 + 170 * n_layers, margin=MARGIN)
    return fig


def positional_figure(pe: np.ndarray) -> go.Figure:
    """The encoding added at each position (left) and how alike positions are (cosine, right):
    a bright band along the diagonal means neighbours look alike and far positions differ."""
    fig = make_subplots(
        1, 2, subplot_titles=["encoding: position × dimension", "cosine similarity of positions"]
    )
    fig.add_trace(go.Heatmap(z=pe, colorscale="RdBu", zmid=0, showscale=False), 1, 1)
    norms = np.linalg.norm(pe, axis=1, keepdims=True)
    cos = (pe @ pe.T) / np.maximum(norms * norms.T, 1e-12)
    fig.add_trace(go.Heatmap(z=cos, colorscale="Viridis", zmin=-1, zmax=1, colorbar=dict(thickness=10)), 1, 2)
    fig.update_yaxes(autorange="reversed", title_text="position", col=1)
    fig.update_yaxes(autorange="reversed", col=2)
    fig.update_xaxes(title_text="dimension", col=1)
    fig.update_xaxes(title_text="position", col=2)
    fig.update_layout(height=330, margin=MARGIN, title=dict(text="positional encodings", font_size=13))
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
