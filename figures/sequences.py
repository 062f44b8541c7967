"""Figures for sequence models (chapters 12-13): what a cell remembers over time, how far back
its gradient reaches, forecasts, and which earlier steps or characters drove an output.
Arrays in, plain figure dicts out; no model is ever seen here."""

from __future__ import annotations

import numpy as np

from figures import plot

colour = plot.colour


def by_span_figure(curves: dict[str, tuple[list, list]], chance: float, height: int = 320) -> dict:
    """Accuracy against how far back the answer lies, one line per cell, chance dotted."""
    data = [
        plot.line(spans, accs, name, color=colour(i), mode="lines+markers")
        for i, (name, (spans, accs)) in enumerate(curves.items())
    ]
    fig = plot.figure(
        data,
        "accuracy by distance to the marked symbol, now",
        height,
        xaxis={"title": "steps back"},
        yaxis={"range": [0, 1.05], "tickformat": ".0%"},
    )
    return plot.with_marks(fig, plot.hline(chance, "chance"))


def gradient_by_step_figure(grads: dict[str, np.ndarray], height: int = 320) -> dict:
    """‖∂answer/∂x_t‖ against the distance from the answer (log scale): a straight falling line is
    a geometric fade, the signature of vanishing gradients through time."""
    data = []
    for i, (name, g) in enumerate(grads.items()):
        back = np.arange(len(g))[::-1]  # the last step is 0 steps back
        data.append(plot.line(back, np.maximum(g, 1e-12), name, color=colour(i)))
    return plot.figure(
        data,
        "how strongly the answer responds to each earlier input (‖∂answer/∂xₜ‖)",
        height,
        xaxis={"title": "steps before the answer", "autorange": "reversed"},
        yaxis=plot.log_axis(*(t["y"] for t in data)),
    )


def hidden_heatmap_figure(
    hidden: np.ndarray, mark: int | None = None, height: int = 260, title: str = ""
) -> dict:
    """Units × time for one sequence: a unit holding a memory is a stripe that stays lit."""
    trace = plot.heatmap(
        np.asarray(hidden).T,
        "RdBu",
        zmid=0,
        colorbar={"thickness": 10},
        hovertemplate="unit %{y}, step %{x}: %{z:.2f}<extra></extra>",
    )
    fig = plot.figure(
        [trace],
        title or "hidden state over one sequence",
        height,
        legend=False,
        xaxis={"title": "time step"},
        yaxis={"title": "unit"},
    )
    return plot.with_marks(fig, plot.vline(mark, "mark", color="black")) if mark is not None else fig


def forecast_figure(
    past: np.ndarray, truth: np.ndarray, preds: dict[str, np.ndarray], height: int = 320
) -> dict:
    """The window the net saw, the clean future and each cell's forecast after it."""
    w = len(past)
    future = np.arange(w, w + len(truth))
    data = [
        plot.line(np.arange(w), past, "seen (noisy)", color="grey"),
        plot.line(future, truth, "truth (clean)", color="black", width=3),
    ]
    data += [
        plot.line(future, p, name, color=colour(i), dash="dash") for i, (name, p) in enumerate(preds.items())
    ]
    fig = plot.figure(data, "forecast for one test sequence", height, xaxis={"title": "time step"})
    return plot.with_marks(fig, plot.vline(w - 0.5))


def attribution_over_time_figure(
    rows: dict[str, np.ndarray], labels: list[str] | None = None, mark: int | None = None
) -> dict:
    """Signed attribution per time step, one row per model, each row scaled to its own largest
    |value| (Captum's visualization scaling without outlier clipping). `mark`: a step to outline."""
    names = list(rows)
    z = np.array([np.asarray(rows[n]) / max(np.abs(rows[n]).max(), 1e-12) for n in names])
    trace = plot.heatmap(
        z,
        "RdBu",
        y=names,
        zmin=-1,
        zmax=1,
        colorbar={"thickness": 10, "title": {"text": "share"}},
        hovertemplate="%{y}, step %{x}: %{z:.2f}<extra></extra>",
    )
    if labels:
        trace["text"] = [labels] * len(names)
        if len(labels) <= 60:
            trace["texttemplate"] = "%{text}"
    fig = plot.figure(
        [trace],
        "Captum: which steps drove this prediction",
        90 + 32 * len(names),
        legend=False,
        xaxis={"title": "time step"},
        yaxis={"autorange": "reversed"},
    )
    return plot.with_marks(fig, plot.vline(mark, color="black", dash="solid")) if mark is not None else fig


VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥"}


def visible(c: str) -> str:
    """A character as a learner can see it on a chart axis (space, newline)."""
    return VISIBLE.get(c, c)


def next_char_figure(vocab: str, probs: np.ndarray, top: int = 20, height: int = 300) -> dict:
    """The `top` likeliest next characters and their probabilities."""
    order = np.argsort(probs)[::-1][:top]
    labels = [f"{visible(vocab[i])}\u200b" for i in order]  # zero-width space: "1" stays a label
    colors = [colour(0)] + [colour(5)] * (len(order) - 1)
    trace = plot.bar(labels, probs[order], colors, hovertemplate="%{x}: %{y:.1%}<extra></extra>")
    return plot.figure(
        [trace],
        "what the model expects next",
        height,
        legend=False,
        xaxis={"type": "category"},
        yaxis={"tickformat": ".0%"},
    )


def example() -> dict:
    spans = [1, 10, 20, 40]
    return by_span_figure(
        {"RNN": (spans, [0.9, 0.4, 0.25, 0.25]), "LSTM": (spans, [1.0, 1.0, 1.0, 0.99])}, 0.25
    )
