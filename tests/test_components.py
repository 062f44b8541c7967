"""Components draw from plain arrays: each module's example() builds a real figure."""

import importlib
import pkgutil

import numpy as np
import plotly.graph_objects as go

import components
from components.curves import thin
from components.images import mosaic


def test_every_component_example_builds_a_figure_with_data():
    found = 0
    for module in pkgutil.iter_modules(components.__path__):
        mod = importlib.import_module(f"components.{module.name}")
        if hasattr(mod, "example"):
            fig = mod.example()
            assert isinstance(fig, go.Figure) and len(fig.data) > 0, module.name
            found += 1
    assert found >= 4


def test_thinning_keeps_the_span_of_a_long_history():
    rows = [{"step": s} for s in range(1, 1001)]
    kept = thin(rows, 100)
    assert len(kept) <= 101 and kept[0]["step"] == 1 and kept[-1]["step"] == 1000


def test_mosaic_separates_tiles_with_gaps_and_scales_each_tile():
    tiles = np.stack([np.full((3, 3), 5.0), np.full((3, 3), -2.0)])
    out = mosaic(tiles, cols=2)
    assert out.shape == (3, 7) and np.isnan(out[:, 3]).all()
    assert out[0, 0] == 1.0 and out[0, 4] == -1.0
