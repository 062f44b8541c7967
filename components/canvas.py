"""A drawing canvas (components v2, no dependency): the learner draws a digit, the page gets it
as a grey array. Model-free: what the drawing means is the lab's business."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

HERE = Path(__file__).resolve().parent
GRID = 112  # the canvas (280 px) arrives downscaled to this many pixels a side: 12,544 numbers

CANVAS = st.components.v2.component(
    "dllab_canvas",
    js=(HERE / "canvas.js").read_text(encoding="utf-8"),
    css=(HERE / "canvas.css").read_text(encoding="utf-8"),
)


def drawing(key: str) -> np.ndarray | None:
    """The drawing as (GRID, GRID) floats in [0, 1], ink bright; None before any stroke or after
    Clear, or if what came back is not a square grid of grey values."""
    result = CANVAS(key=key, data={"size": GRID}, default={"pixels": None}, on_pixels_change=lambda: None)
    pixels = getattr(result, "pixels", None)
    if not pixels or not isinstance(pixels, dict):
        return None
    size, grey = pixels.get("size"), pixels.get("grey")
    if not isinstance(size, int) or not isinstance(grey, list) or len(grey) != size * size:
        return None
    return np.asarray(grey, dtype=np.float32).reshape(size, size) / 255.0
