"""Figures draw from plain arrays into plain figure dicts; each chapter's live views turn a real
run's history into parts the browser can draw, without Streamlit and without a model. (Which
packages may import what is held by tests/test_layers.py, from the import graph.)"""

import importlib
import json
import pkgutil
from pathlib import Path

import numpy as np
import pytest
import torch

import figures
from chapters import CHAPTERS, link_prefix
from figures import plot
from figures.images import mosaic
from figures.views import NUMBERS, Views, cells, views_of
from labs.core.contract import experiments_of, lab_of
from labs.core.frames import to_json
from labs.core.history import History
from tests.runs import run_view

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def assert_plain_figure(fig, where):
    assert isinstance(fig, dict) and set(fig) == {"data", "layout"}, where
    assert fig["data"] and fig["layout"]["template"] is plot.TEMPLATE, where
    json.loads(to_json(fig))  # the browser can read it


def test_every_figure_modules_example_builds_a_plain_figure_with_data():
    found = 0
    for module in pkgutil.iter_modules(figures.__path__):
        mod = importlib.import_module(f"figures.{module.name}")
        if hasattr(mod, "example"):
            assert_plain_figure(mod.example(), module.name)
            found += 1
    assert found >= 6


def test_thinning_keeps_the_span_of_a_long_history():
    xs = list(range(1, 1001))
    kept, _ = plot.thin(xs, xs, 100)
    assert len(kept) <= 101 and kept[0] == 1 and kept[-1] == 1000


def test_log_axes_tick_every_decade_when_the_values_span_decades():
    assert plot.log_axis([1e-6, 1.0])["dtick"] == 1
    assert "dtick" not in plot.log_axis([2e-3, 3e-3])  # within one decade: plotly picks the ticks
    assert plot.log_axis([1e-3, 1.0])["exponentformat"] == "power"
    # heights spanning thirty decades (the optimizers' surfaces) get a tick every five, not 30
    assert plot.log_axis([1e-25, 1e5])["dtick"] == 5
    assert plot.log_axis([1e-8, 1.0])["dtick"] == 1 and plot.log_axis([1e-9, 1.0])["dtick"] == 2


def test_a_learning_rate_chart_spans_zero_to_just_above_the_highest_rate():
    """A constant 0.01 reads as 0.01 near the top of its chart, not as a line on −0.5 … 1."""
    from figures.landscape import schedule_figure

    assert schedule_figure(np.full(60, 0.01))["layout"]["yaxis"]["range"] == pytest.approx([0, 0.0115])
    one_cycle = schedule_figure(np.linspace(0.0, 0.1, 60), ([1, 2], [0.0, 0.2]))
    assert one_cycle["layout"]["yaxis"]["range"] == pytest.approx([0, 0.23])


def test_mosaic_separates_tiles_with_gaps_and_scales_each_tile():
    tiles = np.stack([np.full((3, 3), 5.0), np.full((3, 3), -2.0)])
    out = mosaic(tiles, cols=2)
    assert out.shape == (3, 7) and np.isnan(out[:, 3]).all()
    assert out[0, 0] == 1.0 and out[0, 4] == -1.0


def test_layouts_resolve_wildcards_and_skip_parts_not_drawn():
    layout = (((("a", "b"), 1),), (("c", 2), "missing"), ("heat: *",))
    rows = cells(layout, ["a", "c", "heat: x", "heat: y", "heat: z", "heat: w"])
    assert rows[0] == [(("a",), 1.0)] and rows[1] == [(("c",), 2)]
    assert [len(r) for r in rows[2:]] == [3, 1]
    with pytest.raises(ValueError, match="a name, or"):
        Views(dict, ((("a", "b"),),))  # two names side by side need no tuple; stacked need a width


def every_experiment():
    """Each lab's experiments, by part, with the views that draw them (figures.views.views_of);
    a page with several reads its link settings as "<part>.<knob>"."""
    for chapter in CHAPTERS:
        module = importlib.import_module(f"figures.views.{chapter.slug}")
        for part, experiment in experiments_of(lab_of(chapter.slug)).items():
            name = f"{chapter.slug}.{part or 'main'}"
            yield pytest.param(chapter, experiment, views_of(module, part), link_prefix(part), id=name)


@pytest.mark.parametrize("chapter, experiment, views, prefix", list(every_experiment()))
def test_every_chapters_live_views_draw_a_short_run(chapter, experiment, views, prefix):
    from labs.core.config import from_params

    cfg, _ = from_params(experiment.config, chapter.smoke, prefix)
    view = run_view(experiment.train, cfg)
    parts = views.draw(view)
    assert parts, "nothing drawn for a finished run"
    for name, part in parts.items():
        if name == NUMBERS:
            assert all(isinstance(label, str) and isinstance(value, str) for label, value in part)
        elif "text" in part:
            assert isinstance(part["text"], str)
        else:
            assert_plain_figure(part, f"{chapter.slug}: {name}")
    assert cells(views.layout, list(parts)), "the layout places none of the parts"
    placed = {n for row in cells(views.layout, list(parts)) for names, _ in row for n in names}
    assert placed == set(parts) - {NUMBERS}, "a part is drawn that the layout never shows"
    assert views.draw(History(cfg)) == {}  # before the first snapshot: nothing, and no error
