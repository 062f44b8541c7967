"""The app as learners meet it: a real `streamlit run`, driven by Debian's Chromium.

Each page loads, trains with its live panel streaming frames into charts that are never
remounted, stops halfway keeping its partial curves, and trains a default run to the end;
learners stay isolated from each other's runs and streams; heavy links are cut to the budget;
a closed tab frees its slot; the app works under a base URL path, and a deep link can be a
fresh server's first request. Screenshots of every page land in artifacts/screenshots/.

Every wait is on a state (a frame counter, a status line), never on a run being slow enough.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import sync_playwright

from chapters import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"
PANEL = ".dl-panel.dl-live"  # a panel showing a run (idle ones wait hidden on every page)
FRAMES_JS = "() => Number(document.querySelector('.dl-panel.dl-live')?.dataset.frames || 0)"
STATUS_JS = "() => document.querySelector('.dl-panel.dl-live .dl-status span')?.textContent || ''"
# The furthest step any chart's curve reaches (the final charts are Streamlit's, the live ones
# the panel's; both are plotly, whose decoded traces hold the x values).
LAST_STEP_JS = """() => Math.max(0, ...Array.from(document.querySelectorAll('.js-plotly-plot'))
  .flatMap(p => (p._fullData || []).filter(t => t.type === 'scatter' && t.x && t.x.length)
    .map(t => Math.max(...Array.from(t.x).filter(v => Number.isFinite(v))))))"""
# Live charts wider than their cell: plotly sizes a chart to its div when drawn, and a row that
# gains a cell later shrinks the div under it.
OVERFLOWING_JS = """() => Array.from(document.querySelectorAll('.dl-part'))
  .filter(b => b._fullLayout && b._fullLayout.width > b.clientWidth + 2).map(b => b.dataset.part)"""
IDLE_CAPTIONS_JS = """() => Array.from(document.querySelectorAll('p'))
  .filter(p => p.textContent.includes('to start a run')).length"""
LONG_PLAYGROUND = "epochs=1000&points=2000&batch_size=4"  # minutes of tiny steps, within the budget


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def lab_server(*flags: str, base: str = "", **settings: str):
    """A real `streamlit run app.py` on a free port (two CPU run slots unless `settings` say
    otherwise); yields its URL."""
    port = free_port()
    env = {**os.environ, "DLLAB_ALLOW_DOWNLOAD": "0", "DLLAB_CPU_RUNS": "2", **settings}
    env.pop("DLLAB_EXECUTOR", None)  # the real thing: worker processes
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    proc = subprocess.Popen(
        [*command, "--server.address", "127.0.0.1", *flags],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}{base}"
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("streamlit did not start")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:  # a worker still winding down a long step
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def server():
    with lab_server() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make test`, it installs it"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def open_page(target, base, slug, params, height=1000):
    """A page of `slug` in a new tab of `target` (the browser, or one learner's context)."""
    page = target.new_page()
    page.set_viewport_size({"width": 1400, "height": height})
    query = params if isinstance(params, str) else urlencode(params)
    page.goto(f"{base}/{slug}?{query}")
    page.wait_for_selector(IDLE, timeout=90_000)
    return page


def train_button(page, key):
    button = page.locator(f".st-key-{key}-train button")
    button.wait_for(timeout=60_000)
    return button


def assert_no_exception(page):
    assert page.locator("[data-testid=stException]").count() == 0, page.locator(
        "[data-testid=stException]"
    ).all_inner_texts()


def wait_until(page, js, test, what, timeout=90):
    """Poll a measure in the page until `test(value)`; returns the value."""
    end = time.time() + timeout
    while time.time() < end:
        value = page.evaluate(js)
        if test(value):
            return value
        page.wait_for_timeout(100)
    raise AssertionError(f"{what}: still {page.evaluate(js)!r} after {timeout} s")


def frames_beyond(page, n, timeout=90):
    return wait_until(page, FRAMES_JS, lambda f: f > n, f"frames beyond {n}", timeout)


def status_says(page, text, timeout=90):
    return wait_until(page, STATUS_JS, lambda s: text in s, f"panel status '{text}'", timeout)


def alert(page, text):
    """A Streamlit status box (success, info, warning, error) that says `text`."""
    return page.locator("[data-testid=stAlert]", has_text=text).first


# ---------------------------------------------------------------- every page


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.slug)
def test_frames_stream_into_the_same_charts_and_stop_keeps_the_partial_curves(browser, server, chapter):
    page = open_page(browser, server, chapter.slug, chapter.long_run)
    assert_no_exception(page)
    key = chapter.run_keys[0]
    # the panel waits, hidden and connected, before any run: Train needs no new connection
    waiting = page.locator(f".st-key-{key}-live .dl-panel")
    waiting.wait_for(state="attached", timeout=30_000)
    path = waiting.evaluate("e => e.dataset.path")
    idle_captions = page.evaluate(IDLE_CAPTIONS_JS)  # one per experiment not run yet
    train_button(page, key).click()
    page.wait_for_selector(f"{PANEL} .js-plotly-plot", timeout=90_000)
    first = frames_beyond(page, 0)
    assert page.evaluate(f"() => document.querySelector('{PANEL}').dataset.path") == path
    # Train reran only its buttons; after the first frame the page reruns to its live state
    wait_until(page, IDLE_CAPTIONS_JS, lambda n: n < idle_captions, "the page's live state", 60)
    # mark every live chart's element; after several more frames the same elements are there
    marked = page.evaluate(
        "() => { const c = document.querySelectorAll('.dl-part'); "
        "c.forEach(e => e.__seen = true); return c.length }"
    )
    frames_beyond(page, first + 3)
    status_says(page, "Training: step")
    still = page.evaluate(
        "() => Array.from(document.querySelectorAll('.dl-part')).filter(e => e.__seen).length"
    )
    assert still == marked > 0, "a live chart was remounted while the run trained"
    wait_until(page, OVERFLOWING_JS, lambda wide: not wide, "every live chart within its cell", 10)
    reached = wait_until(page, LAST_STEP_JS, lambda s: s > 1, "a curve reaching past step 1")
    page.locator(f".st-key-{key}-stop button").click()
    alert(page, "Stopped").wait_for(timeout=120_000)  # Stop lands between two steps
    page.wait_for_selector(IDLE, timeout=60_000)
    # nothing learned so far was lost: the final charts reach at least that step
    wait_until(page, LAST_STEP_JS, lambda s: s >= reached, "the stopped curves", timeout=30)
    assert_no_exception(page)
    page.close()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.slug)
def test_a_default_run_finishes_and_is_screenshotted(browser, server, chapter):
    page = open_page(browser, server, chapter.slug, {}, height=3200)  # Streamlit scrolls inside
    train_button(page, chapter.run_keys[0]).click()
    alert(page, "Done in").wait_for(timeout=180_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    page.wait_for_timeout(1500)  # let plotly finish drawing before the picture
    assert_no_exception(page)
    assert page.locator("[data-testid=stAlert]:has-text('failed')").count() == 0
    assert page.locator(PANEL).count() == 0  # the final state replaced the live panel
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(SHOTS / f"{chapter.number:02d}{chapter.suffix}-{chapter.slug}.png"), full_page=True
    )
    page.close()


# ---------------------------------------------------------------- learners apart


def test_two_learners_train_at_once_each_seeing_only_their_own_run(browser, server):
    contexts = [browser.new_context() for _ in range(2)]
    pages = [
        open_page(ctx, server, "playground", f"{LONG_PLAYGROUND}&dataset={d}")
        for ctx, d in zip(contexts, ("moons", "xor"))
    ]
    train_button(pages[0], "playground").click()
    frames_beyond(pages[0], 0)
    pages[1].reload()
    pages[1].wait_for_selector(IDLE, timeout=60_000)
    assert pages[1].locator(PANEL).count() == 0  # learner B sees no run of A's
    train_button(pages[1], "playground").click()
    for page in pages:  # both train at once, each in its own panel
        status_says(page, "Training: step")
    runs = [p.evaluate("() => document.querySelector('.dl-panel.dl-live').dataset.run") for p in pages]
    assert runs[0] != runs[1]
    for page in pages:
        page.locator(".st-key-playground-stop button").click()
        alert(page, "Stopped").wait_for(timeout=120_000)
        assert_no_exception(page)
    for ctx in contexts:
        ctx.close()


def test_a_dropped_connection_is_picked_up_again(browser, server):
    page = open_page(browser, server, "playground", LONG_PLAYGROUND)
    train_button(page, "playground").click()
    before = frames_beyond(page, 2)
    page.evaluate(f"() => document.querySelector('{PANEL}').__panel.socket.close()")  # the network blips
    frames_beyond(page, before + 3)  # the panel reconnected and the frames flow again
    page.locator(".st-key-playground-stop button").click()
    alert(page, "Stopped").wait_for(timeout=120_000)
    page.close()


def test_the_decision_boundary_changes_on_the_screen_as_the_net_learns(browser, server):
    """The boundary is a heatmap whose colours alone change (its range stays 0 to 1): what the
    learner sees must change, not only the numbers behind the picture."""
    page = open_page(browser, server, "playground", LONG_PLAYGROUND)
    train_button(page, "playground").click()
    chart = page.locator(f"{PANEL} [data-part=boundary]")
    chart.locator(".hm image").wait_for(timeout=90_000)
    first = chart.screenshot()
    end = time.time() + 60
    while chart.screenshot() == first:
        assert time.time() < end, "the live boundary kept its first picture"
        page.wait_for_timeout(500)
    page.locator(".st-key-playground-stop button").click()
    alert(page, "Stopped").wait_for(timeout=120_000)
    page.close()


OPEN_JS = """path => new Promise(done => {
  const ws = new WebSocket(`ws://${location.host}${path}`);
  ws.onopen = () => { ws.send('ready'); };
  ws.onmessage = () => { done('frame'); ws.close(); };
  ws.onerror = () => done('refused');
  setTimeout(() => done('timeout'), 15000);
})"""


def test_another_browser_cannot_open_a_runs_stream(browser, server):
    owner, other = browser.new_context(), browser.new_context()
    page = open_page(owner, server, "playground", LONG_PLAYGROUND)
    train_button(page, "playground").click()
    frames_beyond(page, 0)
    path = page.evaluate("() => document.querySelector('.dl-panel.dl-live').dataset.path")
    assert page.evaluate(OPEN_JS, path) == "frame"  # the owner's own browser may open it twice
    stranger = open_page(other, server, "home", {})
    assert stranger.evaluate(OPEN_JS, path) == "refused"  # another browser session: 403
    assert stranger.evaluate(OPEN_JS, path[:-4] + "AAAA") == "refused"  # a wrong token: 404
    page.locator(".st-key-playground-stop button").click()
    alert(page, "Stopped").wait_for(timeout=120_000)
    owner.close()
    other.close()


# ---------------------------------------------------------------- bounded runs


HEAVY_LINKS = [  # every value within its slider's range; each far past the default budget
    ("language", "model=transformer&width=512&layers=4&context=256&batch_size=256&steps=20000"),
    ("attention", "task=add&max_length=16&lengths=all&heads=8&layers=4&width=256&batch_size=512&steps=10000"),
    ("recurrent", "span=200&hidden=256&batch_size=512&steps=5000&bidirectional=true&cells=rnn,lstm,gru"),
]


def train_fitted(page, slug):
    """The budget's warning is on the page before Train; its suggestion is taken; Train."""
    page.get_by_text("This run would need").first.wait_for(timeout=30_000)
    page.locator(f".st-key-{slug}-fit button").click()
    page.get_by_text("This run: about").wait_for(timeout=60_000)  # it fits now
    page.wait_for_selector(IDLE, timeout=60_000)
    train_button(page, slug).click()
    status_says(page, "Training: step", timeout=120)


def stop_and_wait(page, slug):
    page.locator(f".st-key-{slug}-stop button").click()
    alert(page, "Stopped").wait_for(timeout=120_000)


def test_heavy_links_are_cut_to_the_budget_and_stop_frees_a_slot_for_a_queued_learner(browser, server):
    """Two heavy (budget-sized) runs fill both slots; a third learner queues; the first learner's
    Stop lets the third start. Then every heavy link trains and stops."""
    contexts = [browser.new_context() for _ in range(3)]
    (slug_a, query_a), (slug_b, query_b) = HEAVY_LINKS[0], HEAVY_LINKS[1]
    a = open_page(contexts[0], server, slug_a, query_a)
    train_fitted(a, slug_a)
    b = open_page(contexts[1], server, slug_b, query_b)
    train_fitted(b, slug_b)
    c = open_page(contexts[2], server, "playground", LONG_PLAYGROUND)
    train_button(c, "playground").click()
    status_says(c, "Waiting for a free slot", timeout=30)
    stop_and_wait(a, slug_a)
    status_says(c, "Training: step", timeout=60)  # its turn came
    stop_and_wait(b, slug_b)
    stop_and_wait(c, "playground")
    slug, query = HEAVY_LINKS[2]
    d = open_page(contexts[0], server, slug, query)
    train_fitted(d, slug)
    stop_and_wait(d, slug)
    for page in (a, b, c, d):
        assert_no_exception(page)
    for ctx in contexts:
        ctx.close()


def test_closing_the_tab_stops_its_run_and_frees_its_slot(browser, server):
    contexts = [browser.new_context() for _ in range(3)]
    pages = [open_page(ctx, server, "playground", LONG_PLAYGROUND) for ctx in contexts]
    for page in pages[:2]:
        train_button(page, "playground").click()
        status_says(page, "Training: step")
    train_button(pages[2], "playground").click()
    status_says(pages[2], "Waiting for a free slot", timeout=30)
    contexts[0].close()  # the tab (and its session) goes away: its run must end
    status_says(pages[2], "Training: step", timeout=60)
    for page in pages[1:]:
        stop_and_wait(page, "playground")
    for ctx in contexts[1:]:
        ctx.close()


# ---------------------------------------------------------------- links and hosting


def test_a_shared_link_with_bad_values_shows_a_notice(browser, server):
    page = open_page(browser, server, "convnets", {"channels": "500", "pooling": "banana", "epochs": "inf"})
    page.get_by_text("Some settings in this link were adjusted").wait_for(timeout=30_000)
    assert_no_exception(page)
    page.close()


def test_a_text_upload_is_checked_and_a_good_one_trains(browser, server):
    page = open_page(browser, server, "language", {"corpus": "upload", "steps": "30"}, height=1600)
    upload = page.locator(".st-key-language-upload input[type=file]")
    upload.set_input_files(files=[{"name": "photo.txt", "mimeType": "text/plain", "buffer": PNG_BYTES}])
    page.get_by_text("photo.txt contains NUL bytes").wait_for(timeout=30_000)
    text = ("A small text to learn from, line after line.\n" * 80).encode()
    upload.set_input_files(files=[{"name": "notes.csv", "mimeType": "text/csv", "buffer": text}])
    page.get_by_text("ready to train").wait_for(timeout=30_000)  # any plain text, any extension
    train_button(page, "language").click()
    alert(page, "Done in").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    assert_no_exception(page)
    assert page.get_by_text("Ask the trained model").count() == 1
    page.close()


def test_a_clicked_pixel_is_the_one_explained(browser, server):
    """Streamlit hears clicks on points, not on a heatmap's cells: the segmentation page lays a
    transparent point on every pixel. A click there moves the sliders and the explanation."""
    page = open_page(browser, server, "segmentation", {"steps": "20"}, height=2600)
    train_button(page, "segmentation").click()
    alert(page, "Done in").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    chart = page.locator(".st-key-segmentation-pick .js-plotly-plot")
    chart.wait_for(timeout=60_000)
    chart.scroll_into_view_if_needed()
    # where pixel (row 12, column 50) of the image half is drawn, from plotly's own axes
    x, y = chart.evaluate(
        "p => { const L = p._fullLayout, r = p.getBoundingClientRect(); return ["
        "r.left + L._size.l + L.xaxis.d2p(50), r.top + L._size.t + L.yaxis.d2p(12)] }"
    )
    page.mouse.click(x, y)
    page.locator(".st-key-segmentation-row", has_text="12").wait_for(timeout=60_000)
    page.locator(".st-key-segmentation-col", has_text="50").wait_for(timeout=30_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    assert_no_exception(page)
    page.close()


def test_under_a_base_url_path_pages_stream_and_a_deep_link_can_be_the_first_request(browser):
    """A fresh server behind a base path: its first request is a deep link, which lands on
    its page (not a legacy pages/ script), and the live panel streams under the prefix."""
    with lab_server("--server.baseUrlPath", "lab", base="/lab") as url:
        page = open_page(browser, url, "convnets", {"dataset": "digits8", "epochs": "30"})
        page.get_by_role("heading", name="7. Convolutional networks").wait_for(timeout=30_000)
        assert page.evaluate("() => location.pathname") == "/lab/convnets"
        train_button(page, "convnets").click()
        frames_beyond(page, 2)
        assert page.evaluate("() => document.querySelector('.dl-panel.dl-live').dataset.path").startswith(
            "/lab/_lab/live/"
        )
        page.locator(".st-key-convnets-stop button").click()
        alert(page, "Stopped").wait_for(timeout=120_000)
        for chapter in CHAPTERS:  # every chapter's deep link lands on its own page
            page.goto(f"{url}/{chapter.slug}")
            page.get_by_role("heading", name=chapter.label).wait_for(timeout=60_000)
            assert_no_exception(page)
        page.close()


PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 16


def test_a_drawn_digit_is_preprocessed_and_answered_by_every_variant(browser, server):
    """The production page's canvas: a "7" drawn small in a corner reaches the server, is shown
    as the 28×28 the model sees, and every variant answers with its latency."""
    page = open_page(browser, server, "production", {"epochs": "1"}, height=2600)
    train_button(page, "production").click()
    alert(page, "Done in").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    canvas = page.locator(".st-key-production-canvas canvas")
    canvas.wait_for(timeout=60_000)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + 40)
    page.mouse.down()
    for x, y in ((120, 40), (70, 150)):
        page.mouse.move(box["x"] + x, box["y"] + y, steps=12)
    page.mouse.up()
    answers = page.locator(".st-key-production-answers", has_text="int8 dynamic")
    answers.wait_for(timeout=60_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    text = answers.inner_text()
    for variant in (
        "float32 (eager)",
        "int8 dynamic",
        "pruned 80%",
        "ONNX (onnxruntime)",
        "torch.export (.pt2)",
    ):
        assert variant in text, (variant, text)
    assert page.get_by_text("what the model sees").count() == 1
    assert_no_exception(page)
    page.close()
