"""Figures for sequence models (chapters 12-13): what a cell remembers over time, how far back
its gradient reaches, forecasts, and which earlier steps or characters drove an output.
Arrays in, plotly figures out; no model is ever seen here."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from components.compare import colour

MARGIN = dict(l=10, r=10, t=40, b=10)


def _layout(fig: go.Figure, title: str, height: int, **kw) -> go.Figure:
    fig.update_layout(title=dict(text=title, font_size=13), height=height, margin=MARGIN, **kw)
    return fig


def by_span_figure(curves: dict[str, tuple[list, list]], chance: float, height: int = 320) -> go.Figure:
    """Accuracy against how far back the answer lies, one line per cell, chance dotted."""
    fig = go.Figure()
    for i, (name, (spans, accs)) in enumerate(curves.items()):
        fig.add_trace(
            go.Scatter(x=spans, y=accs, name=name, mode="lines+markers", line=dict(color=colour(i)))
        )
    fig.add_hline(y=chance, line=dict(dash="dot", color="grey"), annotation_text="chance")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    return _layout(
        fig,
        "accuracy by distance to the marked symbol, now",
        height,
        xaxis_title="steps back",
        legend=dict(orientation="h"),
    )


def gradient_by_step_figure(grads: dict[str, np.ndarray], height: int = 320) -> go.Figure:
    """‖∂answer/∂x_t‖ against the distance from the answer (log scale): a straight falling line is
    a geometric fade, the signature of vanishing gradients through time."""
    fig = go.Figure()
    for i, (name, g) in enumerate(grads.items()):
        back = np.arange(len(g))[::-1]  # the last step is 0 steps back
        fig.add_trace(go.Scatter(x=back, y=np.maximum(g, 1e-12), name=name, line=dict(color=colour(i))))
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_xaxes(autorange="reversed")
    return _layout(
        fig,
        "how strongly the answer responds to each earlier input (‖∂answer/∂xₜ‖)",
        height,
        xaxis_title="steps before the answer",
        legend=dict(orientation="h"),
    )


def hidden_heatmap_figure(hidden: np.ndarray, mark: int | None = None, height: int = 260) -> go.Figure:
    """Units × time for one sequence: a unit holding a memory is a stripe that stays lit."""
    fig = go.Figure(
        go.Heatmap(
            z=np.asarray(hidden).T,
            colorscale="RdBu",
            zmid=0,
            colorbar=dict(thickness=10),
            hovertemplate="unit %{y}, step %{x}: %{z:.2f}<extra></extra>",
        )
    )
    if mark is not None:
        fig.add_vline(x=mark, line=dict(color="black", dash="dot"), annotation_text="mark")
    return _layout(fig, "hidden state over one sequence", height, xaxis_title="time step", yaxis_title="unit")


def forecast_figure(
    past: np.ndarray, truth: np.ndarray, preds: dict[str, np.ndarray], height: int = 320
) -> go.Figure:
    """The window the net saw, the clean future and each cell's forecast after it."""
    w = len(past)
    future = np.arange(w, w + len(truth))
    fig = go.Figure(go.Scatter(x=np.arange(w), y=past, name="seen (noisy)", line=dict(color="grey")))
    fig.add_trace(go.Scatter(x=future, y=truth, name="truth (clean)", line=dict(color="black", width=3)))
    for i, (name, p) in enumerate(preds.items()):
        fig.add_trace(go.Scatter(x=future, y=p, name=name, line=dict(color=colour(i), dash="dash")))
    fig.add_vline(x=w - 0.5, line=dict(color="grey", dash="dot"))
    return _layout(
        fig, "forecast for one test sequence", height, xaxis_title="time step", legend=dict(orientation="h")
    )


def attribution_over_time_figure(
    rows: dict[str, np.ndarray], labels: list[str] | None = None, mark: int | None = None
) -> go.Figure:
    """Signed attribution per time step, one row per model, each row scaled to its own largest
    |value| (Captum's visualization scaling without outlier clipping). `mark`: a step to outline."""
    names = list(rows)
    z = np.array([np.asarray(rows[n]) / max(np.abs(rows[n]).max(), 1e-12) for n in names])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            y=names,
            text=[labels] * len(names) if labels else None,
            texttemplate="%{text}" if labels and len(labels) <= 60 else None,
            colorscale="RdBu",
            zmin=-1,
            zmax=1,
            colorbar=dict(thickness=10, title="share"),
            hovertemplate="%{y}, step %{x}: %{z:.2f}<extra></extra>",
        )
    )
    if mark is not None:
        fig.add_vline(x=mark, line=dict(color="black", width=2))
    fig.update_yaxes(autorange="reversed")
    return _layout(
        fig, "Captum: which steps drove this prediction", 90 + 32 * len(names), xaxis_title="time step"
    )


VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥"}


def visible(c: str) -> str:
    """A character as a learner can see it on a chart axis (space, newline)."""
    return VISIBLE.get(c, c)


def next_char_figure(vocab: str, probs: np.ndarray, top: int = 20, height: int = 300) -> go.Figure:
    """The `top` likeliest next characters and their probabilities."""
    order = np.argsort(probs)[::-1][:top]
    fig = go.Figure(
        go.Bar(
            x=[f"{visible(vocab[i])}\u200b" for i in order],  # zero-width space: "1" stays a label
            y=probs[order],
            marker_color=[colour(0)] + [colour(5)] * (len(order) - 1),
            hovertemplate="%{x}: %{y:.1%}<extra></extra>",
        )
    )
    fig.update_yaxes(tickformat=".0%")
    fig.update_xaxes(type="category")
    return _layout(fig, "what the model expects next", height)


def example() -> go.Figure:
    spans = [1, 10, 20, 40]
    return by_span_figure(
        {"RNN": (spans, [0.9, 0.4, 0.25, 0.25]), "LSTM": (spans, [1.0, 1.0, 1.0, 0.99])}, 0.25
    )
