"""What happens inside, layer by layer: activation histograms over time ("the colorful
dimension", after fastai), gradient norm and dead units per layer."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots


def activation_histograms_figure(
    layer_history: list[tuple[int, dict]],
    hist_range: tuple[float, float],
    height_per_layer: int = 110,
) -> go.Figure:
    """One strip per layer: x = training step, y = activation value, colour = how many units
    sit there (log scale). Healthy layers show a wide band; collapsing ones a thin line at 0."""
    names = list(layer_history[-1][1]) if layer_history else []
    fig = make_subplots(
        rows=max(1, len(names)), cols=1, shared_xaxes=True, subplot_titles=names, vertical_spacing=0.06
    )
    steps = [s for s, _ in layer_history]
    for i, name in enumerate(names, start=1):
        hist = np.stack([layers[name]["hist"] for _, layers in layer_history], axis=1)  # (bins, T)
        centers = np.linspace(*hist_range, hist.shape[0])
        fig.add_trace(
            go.Heatmap(x=steps, y=centers, z=np.log1p(hist * 1000), colorscale="Viridis", showscale=False),
            row=i,
            col=1,
        )
    fig.update_layout(height=60 + height_per_layer * max(1, len(names)), margin=dict(l=10, r=10, t=30, b=10))
    fig.update_annotations(font_size=11)
    return fig


def layer_health_figure(layers: dict[str, dict]) -> go.Figure:
    """Latest gradient norm per layer (log scale) beside the share of dead units."""
    names = list(layers)
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("gradient norm of the weights", "dead units (constant output)")
    )
    norms = [max(layers[n]["grad_norm"], 1e-12) for n in names]
    fig.add_trace(go.Bar(x=names, y=norms, marker_color="#4c78a8", showlegend=False), 1, 1)
    fig.add_trace(
        go.Bar(x=names, y=[layers[n]["dead"] for n in names], marker_color="#e45756", showlegend=False), 1, 2
    )
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=2)
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def gradient_flow_over_time_figure(layer_history: list[tuple[int, dict]]) -> go.Figure:
    """Each layer's gradient norm over training, log scale: vanishing shows as a spread."""
    fig = go.Figure()
    names = list(layer_history[-1][1]) if layer_history else []
    steps = [s for s, _ in layer_history]
    for name in names:
        fig.add_trace(
            go.Scatter(x=steps, y=[max(lay[name]["grad_norm"], 1e-12) for _, lay in layer_history], name=name)
        )
    fig.update_layout(
        height=280,
        yaxis_type="log",
        xaxis_title="step",
        title="gradient flow",
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h"),
    )
    return fig


def show_layers(layer_history: list[tuple[int, dict]], hist_range: tuple[float, float], key: str) -> None:
    if not layer_history:
        st.caption("Per-layer statistics appear with the first snapshot.")
        return
    left, right = st.columns(2)
    left.plotly_chart(layer_health_figure(layer_history[-1][1]), key=f"{key}-health")
    right.plotly_chart(gradient_flow_over_time_figure(layer_history), key=f"{key}-flow")
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
