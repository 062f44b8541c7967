"""Chapter 21 after training: what each written word depended on (Integrated Gradients) beside
where it looked (attention). Arrays in, plain figure dicts out."""

from __future__ import annotations

import numpy as np

from figures import plot


def words_by_digits(trace: dict, inputs: list[str], outputs: list[str], title: str) -> dict:
    """A heatmap trace drawn with the words written down the side and the digits along the top."""
    xs, ys = list(range(len(inputs))), list(range(len(outputs)))
    return plot.figure(
        [{**trace, "x": xs, "y": ys, "hovertemplate": "%{z:.2f}<extra></extra>"}],
        title,
        max(260, 90 + 26 * len(outputs)),
        legend=False,
        xaxis={"tickvals": xs, "ticktext": inputs, "side": "top", "showgrid": False},
        yaxis={"tickvals": ys, "ticktext": outputs, "autorange": "reversed", "showgrid": False},
        margin={"l": 90, "r": 10, "t": 70, "b": 10},
    )


def attention_figure(weights, inputs: list[str], outputs: list[str], title: str) -> dict:
    """Rows: the words written; columns: the digits; each row sums to 1."""
    trace = plot.heatmap(
        np.asarray(weights, dtype=np.float32),
        zmin=0,
        zmax=1,
        colorbar={"thickness": 10, "title": {"text": "weight"}},
    )
    return words_by_digits(trace, inputs, outputs, title)


def attribution_figure(attribution: np.ndarray, inputs: list[str], outputs: list[str], title: str) -> dict:
    """Each row scaled to its own largest |value| (blue raised the word's score, red lowered it)."""
    scaled = attribution / np.maximum(np.abs(attribution).max(axis=1, keepdims=True), 1e-12)
    trace = plot.heatmap(scaled, "RdBu", zmin=-1, zmax=1, colorbar={"thickness": 10})
    return words_by_digits(trace, inputs, outputs, title)
