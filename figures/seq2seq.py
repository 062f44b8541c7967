"""Chapter 21 after training: what each written word depended on (Integrated Gradients) beside
where it looked (attention). Arrays in, plain figure dicts out."""

from __future__ import annotations

import numpy as np

from figures import plot


def attribution_figure(attribution: np.ndarray, inputs: list[str], outputs: list[str], title: str) -> dict:
    """Rows: the words written; columns: the digits; each row scaled to its own largest |value|
    (blue raised the word's score, red lowered it)."""
    scaled = attribution / np.maximum(np.abs(attribution).max(axis=1, keepdims=True), 1e-12)
    xs, ys = list(range(len(inputs))), list(range(len(outputs)))
    trace = plot.heatmap(
        scaled,
        "RdBu",
        x=xs,
        y=ys,
        zmin=-1,
        zmax=1,
        colorbar={"thickness": 10},
        hovertemplate="%{z:.2f}<extra></extra>",
    )
    return plot.figure(
        [trace],
        title,
        max(260, 90 + 26 * len(outputs)),
        legend=False,
        xaxis={"tickvals": xs, "ticktext": inputs, "side": "top", "showgrid": False},
        yaxis={"tickvals": ys, "ticktext": outputs, "autorange": "reversed", "showgrid": False},
        margin={"l": 90, "r": 10, "t": 70, "b": 10},
    )
