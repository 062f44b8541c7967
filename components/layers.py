"""What happens inside, layer by layer: activation histograms over time ("the colorful
dimension", after fastai), gradient norm and dead units per layer."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st


def activation_histograms_figure(
    layer_history: list[tuple[int, dict]], hist_range: tuple[float, float], band_height: int = 90
) -> go.Figure:
    """One band per layer (first on top): x = training step, y = activation value from
    hist_range[0] (bottom of the band) to hist_range[1] (top), colour = how many units sit
    there (log scale). Healthy layers show a wide band; collapsing ones a thin line.

    All bands are one heatmap with a gap row between layers: far cheaper to build and to
    draw than one subplot per layer, which matters at every live tick."""
    names = list(layer_history[-1][1]) if layer_history else []
    steps = [s for s, _ in layer_history]
    bands, centers, gap = [], [], None
    for name in reversed(names):  # heatmap rows grow upwards: the first layer goes last
        hist = np.stack([layers[name]["hist"] for _, layers in layer_history], axis=1)  # (bins, T)
        if gap is not None:
            bands.append(gap)
        gap = np.full((1, hist.shape[1]), np.nan)
        centers.append(sum(len(b) for b in bands) + hist.shape[0] / 2)
        bands.append(np.log1p(hist * 1000))
    z = np.concatenate(bands) if bands else np.zeros((1, 1))
    fig = go.Figure(go.Heatmap(x=steps, z=z, colorscale="Viridis", showscale=False, hoverongaps=False))
    fig.update_yaxes(tickvals=centers, ticktext=list(reversed(names)), showgrid=False)
    lo, hi = hist_range
    fig.update_layout(
        height=60 + band_height * max(1, len(names)),
        margin=dict(l=10, r=10, t=30, b=10),
        title=dict(text=f"activations over training (each band: {lo:g} bottom to {hi:g} top)", font_size=13),
        xaxis_title="step",
    )
    return fig


GRADIENT_TITLES = {"grad_norm": "gradient norm of the weights", "grad_rms": "gradient per weight (RMS)"}


def layer_health_figure(layers: dict[str, dict], grad_key: str = "grad_norm") -> go.Figure:
    """Latest gradient norm per layer (log scale) beside the share of dead units.
    Two axes placed by hand: make_subplots costs ~15 ms per live tick."""
    names = list(layers)
    norms = [max(layers[n].get(grad_key, 0.0), 1e-12) for n in names]
    dead = [layers[n]["dead"] for n in names]
    fig = go.Figure(
        [
            go.Bar(x=names, y=norms, marker_color="#4c78a8", showlegend=False),
            go.Bar(x=names, y=dead, marker_color="#e45756", showlegend=False, xaxis="x2", yaxis="y2"),
        ]
    )
    fig.update_layout(
        height=280,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis=dict(domain=[0, 0.45]),
        yaxis=dict(type="log"),
        xaxis2=dict(domain=[0.55, 1], anchor="y2"),
        yaxis2=dict(range=[0, 1], tickformat=".0%", anchor="x2"),
        annotations=[
            dict(text=text, x=x, y=1.12, xref="paper", yref="paper", showarrow=False, font_size=11)
            for text, x in ((GRADIENT_TITLES[grad_key], 0.22), ("dead units (constant output)", 0.78))
        ],
    )
    return fig


def gradient_flow_over_time_figure(
    layer_history: list[tuple[int, dict]], grad_key: str = "grad_norm", title: str = "gradient flow"
) -> go.Figure:
    """Each layer's gradient norm over training, log scale: vanishing shows as a spread."""
    fig = go.Figure()
    names = list(layer_history[-1][1]) if layer_history else []
    steps = [s for s, _ in layer_history]
    for name in names:
        fig.add_trace(
            go.Scatter(
                x=steps, y=[max(lay[name].get(grad_key, 0.0), 1e-12) for _, lay in layer_history], name=name
            )
        )
    fig.update_layout(
        height=280,
        yaxis_type="log",
        xaxis_title="step",
        title=title,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h"),
    )
    return fig


def show_layers(
    layer_history: list[tuple[int, dict]],
    hist_range: tuple[float, float],
    key: str,
    grad_key: str = "grad_norm",
) -> None:
    if not layer_history:
        st.caption("Per-layer statistics appear with the first snapshot.")
        return
    left, right = st.columns(2)
    left.plotly_chart(layer_health_figure(layer_history[-1][1], grad_key), key=f"{key}-health")
    right.plotly_chart(gradient_flow_over_time_figure(layer_history, grad_key), key=f"{key}-flow")
    st.plotly_chart(activation_histograms_figure(layer_history, hist_range), key=f"{key}-hist")


def example() -> go.Figure:
    rng = np.random.default_rng(0)
    hist = [
        (
            s,
            {
                f"layer {i}": {"hist": rng.random(40), "grad_norm": 10.0**-i, "dead": 0.1 * i}
                for i in range(3)
            },
        )
        for s in range(10)
    ]
    return activation_histograms_figure(hist, (-1, 1))


def gradient_heatmap_figure(
    layer_history: list[tuple[int, dict]],
    grad_key: str = "grad_rms",
    height: int = 320,
    z_range: tuple[float, float] | None = None,
) -> go.Figure:
    """Layers (first on top) × steps, colour = log10 of the gradient: for deep nets, where
    one line per layer would be a tangle. Vanishing shows as a dark top."""
    names = list(layer_history[-1][1]) if layer_history else []
    steps = [s for s, _ in layer_history]
    z = (
        np.log10(np.maximum([[lay[n].get(grad_key, 0.0) for _, lay in layer_history] for n in names], 1e-12))
        if names
        else np.zeros((1, 1))
    )
    fig = go.Figure(
        go.Heatmap(
            x=steps,
            y=names,
            z=z,
            zmin=z_range[0] if z_range else None,  # side-by-side charts share one colour scale
            zmax=z_range[1] if z_range else None,
            colorscale="Viridis",
            colorbar=dict(title="log₁₀", thickness=12),
            hovertemplate="%{y} at step %{x}: 10^%{z:.1f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        title=dict(text=f"{GRADIENT_TITLES.get(grad_key, grad_key)} per layer over training", font_size=13),
        xaxis_title="step",
    )
    return fig


def weight_histograms_figure(
    hists: dict[str, dict[str, np.ndarray]], value_range: tuple[float, float], colors: tuple = ()
) -> go.Figure:
    """All weights of each variant as one histogram (layers pooled, each weighted equally),
    overlaid: weight decay shows as a narrower peak."""
    lo, hi = value_range
    fig = go.Figure()
    for i, (name, layers) in enumerate(hists.items()):
        share = np.mean(list(layers.values()), axis=0)
        centers = lo + (np.arange(len(share)) + 0.5) * (hi - lo) / len(share)
        color = colors[i % len(colors)] if colors else None
        fig.add_trace(
            go.Scatter(
                x=centers, y=share, name=name, fill="tozeroy", line_shape="hvh", line=dict(color=color)
            )
        )
    fig.update_layout(
        title=dict(text="weights (all layers; the end bins collect the tails)", font_size=13),
        height=330,
        margin=dict(l=10, r=10, t=40, b=10),
        yaxis_tickformat=".0%",
        legend=dict(orientation="h"),
    )
    return fig


def log_range(layer_histories: list[list[tuple[int, dict]]], key: str = "grad_rms") -> tuple[float, float]:
    """log10 range of one statistic over several runs: one colour scale for all of them."""
    values = [max(s[key], 1e-12) for h in layer_histories for _, lay in h for s in lay.values() if key in s]
    return (float(np.log10(min(values))), float(np.log10(max(values)))) if values else (-12.0, 0.0)
