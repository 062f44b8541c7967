"""The live panel's redrawing in place (components/inplace.js), in Chromium against plotly.js
itself: a chart whose data alone moved is redrawn in place to the picture Plotly.react draws
from the same figure, and anything the in-place drawing cannot follow is left to Plotly.react."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from components.live import PANEL_JS
from figures import curves, images, landscape, plot
from figures.views import gans as gans_views
from labs.core.frames import to_json
from server.routes import PLOTLY_JS
from tests.browser import browser  # noqa: F401 (a fixture)

# Two playground boundaries a few epochs apart: the same points, a new P(blue) over the plane.
GRID = np.linspace(-1.5, 1.5, 40, dtype=np.float32)
XX, YY = np.meshgrid(GRID, GRID)
RNG = np.random.default_rng(0)
POINTS = RNG.uniform(-1.4, 1.4, (200, 2)).astype(np.float32)
LABELS = (POINTS[:, 0] * POINTS[:, 1] > 0).astype(np.int64)


def boundary(probs) -> dict:
    fig = images.decision_boundary_figure(probs, 1.5, POINTS, LABELS, POINTS[::2] * 0.9, LABELS[::2])
    fig = json.loads(to_json(fig))
    for trace in fig["data"]:  # WebGL, as the panel draws clouds of thousands: left as they are
        if trace.get("mode") == "markers":
            trace["type"] = "scattergl"
    return fig


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


EARLY = boundary(sigmoid(3 * XX + YY))
LATER = boundary(sigmoid(4 * XX * YY + 0.5 * XX - 0.3))  # a saddle: two branches, one crossing
EARLY_CORNER, LATER_CORNER = (
    float(sigmoid(3 * XX + YY)[0, 0]),
    float(sigmoid(4 * XX * YY + 0.5 * XX - 0.3)[0, 0]),
)


def race(steps: int) -> dict:
    """Three optimizers' paths over a bowl, `steps` of them drawn."""
    axis = np.linspace(-2, 2, 60)
    x, y = np.meshgrid(axis, axis)
    contours = {"x": axis, "y": axis, "z": x**2 + 3 * y**2}
    t = np.linspace(0, 1, 200)[:steps, None]
    paths = {
        name: np.hstack([-1.8 + 1.8 * t**k, 1.5 - 1.5 * np.sqrt(t) * (1 + 0.2 * k)])
        for k, name in enumerate(["SGD", "Momentum", "Adam"], 1)
    }
    return json.loads(to_json(landscape.trajectories_figure(contours, paths, [(0.0, 0.0)])))


PAGE = (
    "<html><body style='margin:0'>"
    + "".join(f"<div id={name} style='width:700px;height:460px'></div>" for name in ("inplace", "react"))
    + "</body></html>"
)

# Draws `first` in #inplace, then `second` over it in place; `second` in #react by Plotly.react.
DRAW_JS = """async ([first, second]) => {
  const [a, b] = ['inplace', 'react'].map((id) => document.getElementById(id));
  for (const gd of [a, b]) Plotly.purge(gd);
  willDrawInFull(a, first.data, first.layout);
  await Plotly.react(a, first.data, first.layout);
  const inPlace = redrawInPlace(a, second.data, second.layout);
  if (!inPlace) await Plotly.react(a, second.data, second.layout); // as the panel does
  await Plotly.react(b, second.data, second.layout);
  return inPlace;
}"""


@pytest.fixture(scope="module")
def page(browser):  # noqa: F811
    page = browser.new_page(viewport={"width": 800, "height": 1000})
    page.set_content(PAGE)
    page.add_script_tag(content=PLOTLY_JS.read_text(encoding="utf-8"))
    # the panel's own script, its module export aside: its functions become the page's
    page.add_script_tag(content=PANEL_JS.replace("export default function", "function mount"))
    yield page
    page.close()


def pixels(page, selector) -> np.ndarray:
    shot = page.locator(selector).screenshot()
    return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), dtype=np.int16)


def differing(a: np.ndarray, b: np.ndarray) -> float:
    """The share of pixels that differ visibly (by more than 60 in some channel)."""
    return float((np.abs(a - b).max(axis=2) > 60).mean())


def drawn_in_place(page, first: dict, second: dict) -> tuple[bool, float, float]:
    """Whether `second` was drawn in place over `first`; how much of it differs from
    Plotly.react's drawing of `second`; and how much `first` differed from it."""
    page.evaluate(
        """async (f) => { const a = document.getElementById('inplace'); Plotly.purge(a);
           await Plotly.react(a, f.data, f.layout); }""",
        first,
    )
    before = pixels(page, "#inplace")
    done = page.evaluate(DRAW_JS, [first, second])
    react = pixels(page, "#react")
    return done, differing(pixels(page, "#inplace"), react), differing(before, react)


def test_a_new_boundary_is_drawn_in_place_as_plotly_draws_it(page):
    done, after, before = drawn_in_place(page, EARLY, LATER)
    assert done
    # the heatmap's colours are plotly's own (its image, pixel for pixel)
    brick_colours = page.evaluate(
        """async () => Promise.all(['inplace', 'react'].map(async (id) => {
          const image = document.querySelector(`#${id} .hm image`);
          const img = new Image();
          img.src = image.getAttribute('href') || image.getAttribute('xlink:href');
          await img.decode();
          const canvas = document.createElement('canvas');
          [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
          const context = canvas.getContext('2d');
          context.drawImage(img, 0, 0);
          return [img.naturalWidth, Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data)];
        }))"""
    )
    (width_a, ours), (width_b, plotlys) = brick_colours
    assert width_a == width_b == 40
    assert np.abs(np.array(ours) - np.array(plotlys)).max() <= 1
    # and the whole picture (the P = 0.5 line drawn straight where plotly smooths it) is
    # plotly's to a few pixels along that line, where the early picture differed widely
    assert before > 0.2, before
    assert after < 0.01, after


def test_moving_paths_are_drawn_in_place_over_the_surface(page):
    done, after, before = drawn_in_place(page, race(60), race(140))
    assert done
    assert before > 0.002, before  # the paths grew and their heads moved (thin lines)
    assert after < 0.1 * before, (after, before)


def plane(seed: int) -> dict:
    """A GAN's plane: D's field, the target, 512 generated points and 64 arrows (one line, broken
    between arrows), the generated points and arrows elsewhere for another `seed`."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(-3, 3, 48, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    view = {
        "grid": grid,
        "field": sigmoid(gx * np.cos(seed) + gy * np.sin(seed)).astype(np.float32),
        "target": np.random.default_rng(0).normal(size=(512, 2)).astype(np.float32),
        "generated": rng.normal(0.5, 0.8, (512, 2)).astype(np.float32),
        "push": rng.normal(size=(64, 2)).astype(np.float32),
    }
    return json.loads(to_json(gans_views.plane_figure(view, critic=False)))


def test_moving_points_and_arrows_are_drawn_in_place(page):
    done, after, before = drawn_in_place(page, plane(1), plane(2))
    assert done
    assert before > 0.05, before
    assert after < 0.002, after


def test_a_redraw_in_place_then_a_resize_shows_the_new_picture(page):
    """Plotly redraws a resized chart from its own data: the data drawn in place."""
    page.evaluate(DRAW_JS, [EARLY, LATER])
    resize_both = """async (width) => { for (const id of ['inplace', 'react']) {
        const gd = document.getElementById(id); gd.style.width = width;
        await Plotly.Plots.resize(gd); } }"""
    page.evaluate(resize_both, "640px")
    page.wait_for_function("() => document.getElementById('inplace').__redrawing")
    page.evaluate("() => document.getElementById('inplace').__redrawing")  # drawn anew
    try:
        assert differing(pixels(page, "#inplace"), pixels(page, "#react")) < 0.01
    finally:
        page.evaluate(resize_both, "700px")


def _moved(fig: dict, change) -> dict:
    fig = json.loads(json.dumps(fig))
    change(fig)
    return fig


def _colour_range_follows_data(fig):
    for trace in fig["data"]:
        if trace["type"] == "heatmap":
            del trace["zmin"], trace["zmax"]


@pytest.mark.parametrize(
    "what, first, second",
    [
        ("a new title", EARLY, _moved(LATER, lambda f: f["layout"]["title"].update(text="epoch 9"))),
        (
            "a range that moved",
            race(60),
            _moved(race(140), lambda f: f["layout"]["xaxis"].update(range=[-3, 3])),
        ),
        (
            "a colour range that follows the data",
            _moved(EARLY, _colour_range_follows_data),
            _moved(LATER, _colour_range_follows_data),
        ),
        ("a new trace", EARLY, _moved(LATER, lambda f: f["data"].append(plot.markers([0.0], [0.0], "new")))),
        (
            "a WebGL cloud that moved",
            EARLY,
            _moved(EARLY, lambda f: f["data"][2].update(x=f["data"][3]["x"])),
        ),
        (
            "a path with a gap",
            race(60),
            _moved(race(140), lambda f: f["data"][1].update(x=[0.0, None, 1.0], y=[0.0, 1.0, 1.0])),
        ),
    ],
)
def test_what_cannot_be_drawn_in_place_is_left_to_plotly(page, what, first, second):
    done, _, _ = drawn_in_place(page, first, second)
    assert not done, what


REDRAW_JS = "(f) => redrawInPlace(document.getElementById('inplace'), f.data, f.layout)"
DATA_DRAWN_JS = "() => document.getElementById('inplace').calcdata[0][0].z[0][0]"


def test_a_chart_under_the_pointer_is_drawn_by_plotly(page):
    """Plotly's hover reads the data it drew itself: a chart drawn in place is drawn anew when
    the pointer enters it, and by Plotly.react while the pointer is over it."""
    page.evaluate(DRAW_JS, [EARLY, LATER])  # LATER drawn in place
    assert page.evaluate(DATA_DRAWN_JS) == pytest.approx(EARLY_CORNER, abs=1e-6)  # plotly's, not shown
    page.locator("#inplace").hover()
    page.wait_for_function("() => document.getElementById('inplace').__redrawing")
    page.evaluate("() => document.getElementById('inplace').__redrawing")
    assert page.evaluate(DATA_DRAWN_JS) == pytest.approx(LATER_CORNER, abs=1e-6)  # the hover's data
    assert page.evaluate(REDRAW_JS, EARLY) is False
    page.locator("#react").hover()  # the pointer leaves
    assert page.evaluate(REDRAW_JS, EARLY) is True


def curve(steps: int, markers: bool = False, spike_at: int | None = None, log_y: bool = False) -> dict:
    """A loss curve's first `steps` points (a spike of 5 at `spike_at`), as a live part."""
    xs = np.arange(1, steps + 1)
    ys = 2.0 * np.exp(-xs / 40) + 0.05 + 0.03 * np.sin(xs)  # positive, as a loss
    if spike_at is not None and spike_at <= steps:
        ys[spike_at - 1] = 5.0
    fig = curves.curves_figure({"train loss": (xs.tolist(), ys.tolist())}, "loss", log_y=log_y)
    if markers:
        fig["data"][0]["mode"] = "lines+markers"
    return json.loads(to_json(fig))


# The panel's way with a live curve: its axes fixed and grown, drawn in place when it can be.
LIVE_CURVE_JS = """async (frames) => {
  const [a, b] = ['inplace', 'react'].map((id) => document.getElementById(id));
  for (const gd of [a, b]) { Plotly.purge(gd); delete gd.__ranges; }
  let [full, inPlace, layout] = [0, 0, null];
  for (const f of frames) {
    layout = withGrowingAxes(a, f.data, f.layout);
    if (redrawInPlace(a, f.data, layout)) inPlace++;
    else { full++; willDrawInFull(a, f.data, layout); await Plotly.react(a, f.data, layout); }
  }
  const last = frames[frames.length - 1];
  await Plotly.react(b, last.data, JSON.parse(JSON.stringify(layout)));
  return {full, inPlace, x: a._fullLayout.xaxis.range, y: a._fullLayout.yaxis.range};
}"""


@pytest.mark.parametrize("markers, log_y", [(False, False), (True, False), (False, True)])
def test_a_growing_curve_is_drawn_in_place_between_its_axes_growing(page, markers, log_y):
    run = page.evaluate(LIVE_CURVE_JS, [curve(n, markers, log_y=log_y) for n in range(10, 201, 2)])
    # 96 frames: the x axis grows by a third of the steps each time the curve reaches its end
    # (~12 times), the y axis where the loss falls past it (a log axis's more often)
    assert run["full"] <= 24 and run["full"] + run["inPlace"] == 96, run
    assert run["x"][0] == 1 and 200 <= run["x"][1] <= 200 * (1 + 1 / 3), run  # every step, room ahead
    if not log_y:
        assert -0.2 < run["y"][0] < 0.05, run  # a falling loss's room ends just under zero
    # the picture is plotly's own drawing of the last frame with the same axes
    assert differing(pixels(page, "#inplace"), pixels(page, "#react")) < 0.002


def test_a_curve_that_leaves_its_axes_is_drawn_in_full_with_them_grown(page):
    run = page.evaluate(LIVE_CURVE_JS, [curve(n, spike_at=60) for n in range(50, 71)])
    assert run["y"][1] > 5.0, run  # the spike is on the chart
    assert differing(pixels(page, "#inplace"), pixels(page, "#react")) < 0.002


CLOUD_JS = """(n) => isCloud({type: 'scatter', mode: 'markers',
  x: {dtype: 'f4', bdata: btoa('\\0'.repeat(4 * n))}})"""


def test_only_clouds_of_thousands_go_to_webgl(page):
    """A GAN's 512 samples stay SVG, to move in place; 2,000 points are drawn with WebGL."""
    assert page.evaluate(CLOUD_JS, 512) is False
    assert page.evaluate(CLOUD_JS, 2000) is True
