"""The app as learners meet it: a real `streamlit run`, driven by Debian's Chromium.

Each page loads, trains, updates its charts while training, stops halfway keeping its partial
curves, and trains a default run to the end; two learners train at once without seeing each
other's runs. Screenshots of every page land in artifacts/screenshots/.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
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
# Points drawn in all charts, from plotly's decoded traces (numpy data arrives base64-encoded,
# so the raw `data[i].x` has no length).
POINTS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
  .map(p => (p._fullData || []).reduce((n, t) => n + (t._length || 0), 0))
  .reduce((a, b) => a + b, 0)"""
# The furthest training step any curve reaches (long histories are thinned, so point counts
# may shrink, but the curves must never lose the steps they reached).
LAST_STEP_JS = """() => Math.max(0, ...Array.from(document.querySelectorAll('.js-plotly-plot'))
  .flatMap(p => (p._fullData || []).map(t => t.x && t.x.length ? Math.max(...Array.from(t.x)
    .filter(v => typeof v === 'number')) : 0)))"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    env = {**os.environ, "DLLAB_ALLOW_DOWNLOAD": "0", "DLLAB_CPU_RUNS": "2"}
    env.pop("DLLAB_EXECUTOR", None)  # the real thing: worker processes
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("streamlit did not start")
    yield base
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make test`, it installs it"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def open_page(browser, base, chapter, params, height=1000):
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.goto(f"{base}/{chapter.slug}?{urlencode(params)}")
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


def wait_for_beyond(page, js, value, what, timeout=60):
    """Poll a chart measure until it passes `value`. Polling also rides over the moment a rerun
    swaps a chart and its traces are not drawn yet (which reads as 0)."""
    end = time.time() + timeout
    while time.time() < end:
        now = page.evaluate(js)
        if now > value:
            return now
        page.wait_for_timeout(200)
    raise AssertionError(f"the charts' {what} did not pass {value}")


def wait_for_points_beyond(page, points, timeout=60):
    return wait_for_beyond(page, POINTS_JS, points, "point count", timeout)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.slug)
def test_live_charts_update_and_stop_keeps_the_partial_curves(browser, server, chapter):
    page = open_page(browser, server, chapter, chapter.long_run)
    assert_no_exception(page)
    key = chapter.run_keys[0]
    train_button(page, key).click()
    page.wait_for_selector(".js-plotly-plot", state="attached", timeout=60_000)
    first = wait_for_points_beyond(page, 0)
    wait_for_points_beyond(page, first)  # the chart updated while training
    reached = wait_for_beyond(page, LAST_STEP_JS, 1, "last step")
    page.locator(f".st-key-{key}-stop button").click()
    # Stop lands between two steps; on a loaded machine the page may take a while to show it
    alert(page, "Stopped").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    # Nothing learned so far was lost: the stopped curves still reach that step.
    wait_for_beyond(page, LAST_STEP_JS, reached - 1e-9, "last step after Stop", timeout=15)
    assert_no_exception(page)
    page.close()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.slug)
def test_a_default_run_finishes_and_is_screenshotted(browser, server, chapter):
    page = open_page(browser, server, chapter, {}, height=3200)  # Streamlit scrolls inside
    train_button(page, chapter.run_keys[0]).click()
    page.get_by_text("Done in").first.wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    page.wait_for_timeout(1500)  # let plotly finish drawing before the picture
    assert_no_exception(page)
    assert page.locator("[data-testid=stAlert]:has-text('failed')").count() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{chapter.number:02d}-{chapter.slug}.png"), full_page=True)
    page.close()


def test_two_learners_train_at_once_without_seeing_each_other(browser, server):
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    pages = []
    for ctx, dataset in zip(contexts, ("moons", "xor")):
        page = ctx.new_page()
        page.goto(f"{server}/playground?epochs=500&points=1000&dataset={dataset}")  # ~1 min each
        page.wait_for_selector(IDLE, timeout=90_000)
        pages.append(page)
    train_button(pages[0], "playground").click()
    pages[0].wait_for_selector(".js-plotly-plot", state="attached", timeout=60_000)
    pages[1].reload()
    pages[1].wait_for_selector(IDLE, timeout=60_000)
    train_button(pages[1], "playground")
    assert pages[1].locator(".js-plotly-plot").count() == 0  # learner B sees no run of A's
    train_button(pages[1], "playground").click()
    pages[1].wait_for_selector(".js-plotly-plot", state="attached", timeout=60_000)
    for page in pages:  # both runs train at the same time, each on its own page
        page.get_by_text("Training: step").wait_for(timeout=30_000)
    for page in pages:  # (Stop halfway has its own test: with two chart-heavy pages redrawing
        # on two loaded cores, the browser itself is too busy for reliable clicks here)
        page.get_by_text("Done in").first.wait_for(timeout=240_000)
        assert_no_exception(page)
    for ctx in contexts:
        ctx.close()


def test_a_shared_link_with_bad_values_shows_a_notice(browser, server):
    chapter = next(c for c in CHAPTERS if c.slug == "convnets")
    page = open_page(browser, server, chapter, {"channels": "500", "pooling": "banana"})
    page.get_by_text("Some settings in this link were adjusted").wait_for(timeout=30_000)
    assert_no_exception(page)
    page.close()


def test_a_text_upload_is_checked_and_a_good_one_trains(browser, server):
    chapter = next(c for c in CHAPTERS if c.slug == "language")
    page = open_page(browser, server, chapter, {"corpus": "upload", "steps": "30"}, height=1600)
    upload = page.locator(".st-key-language-upload input[type=file]")
    upload.set_input_files(files=[{"name": "photo.txt", "mimeType": "text/plain", "buffer": PNG_BYTES}])
    page.get_by_text("photo.txt contains NUL bytes").wait_for(timeout=30_000)
    text = ("A small text to learn from, line after line.\n" * 80).encode()
    upload.set_input_files(files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": text}])
    page.get_by_text("ready to train").wait_for(timeout=30_000)
    train_button(page, "language").click()
    page.get_by_text("Done in").first.wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    assert_no_exception(page)
    assert page.get_by_text("Ask the trained model").count() == 1
    page.close()


PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 16


LONG_PLAYGROUND = "epochs=1000&points=2000&batch_size=4"  # minutes of tiny steps, within the budget
HEAVY_LINKS = [  # every value within its slider's range; each far past the default budget
    ("language", "model=transformer&width=512&layers=4&context=256&batch_size=256&steps=20000"),
    ("attention", "task=add&max_length=16&lengths=all&heads=8&layers=4&width=256&batch_size=512&steps=10000"),
    ("recurrent", "span=200&hidden=256&batch_size=512&steps=5000&bidirectional=true&cells=rnn,lstm,gru"),
]


def open_link(context, server, slug, query, height=1000):
    page = context.new_page()
    page.set_viewport_size({"width": 1400, "height": height})
    page.goto(f"{server}/{slug}?{query}")
    page.wait_for_selector(IDLE, timeout=90_000)
    return page


def train_fitted(page, slug):
    """The budget's warning is on the page before Train; its suggestion is taken; Train."""
    page.get_by_text("This run would need").first.wait_for(timeout=30_000)
    page.locator(f".st-key-{slug}-fit button").click()
    page.get_by_text("This run: about").wait_for(timeout=60_000)  # it fits now
    page.wait_for_selector(IDLE, timeout=60_000)
    train_button(page, slug).click()
    page.get_by_text("Training: step").first.wait_for(timeout=120_000)


def alert(page, text):
    """A status box (info, warning, error) that says `text`."""
    return page.locator("[data-testid=stAlert]", has_text=text).first


def stop_and_wait(page, slug):
    page.locator(f".st-key-{slug}-stop button").click()
    alert(page, "Stopped").wait_for(timeout=60_000)


def test_heavy_links_are_cut_to_the_budget_and_stop_frees_a_slot_for_a_queued_learner(browser, server):
    """Two heavy (budget-sized) runs fill both slots; a third learner queues; the first learner's
    Stop lets the third start. Then every heavy link trains and stops."""
    contexts = [browser.new_context() for _ in range(3)]
    (slug_a, query_a), (slug_b, query_b) = HEAVY_LINKS[0], HEAVY_LINKS[1]
    a = open_link(contexts[0], server, slug_a, query_a)
    train_fitted(a, slug_a)
    b = open_link(contexts[1], server, slug_b, query_b)
    train_fitted(b, slug_b)
    c = open_link(contexts[2], server, "playground", LONG_PLAYGROUND)
    train_button(c, "playground").click()
    alert(c, "Waiting for a free slot").wait_for(timeout=30_000)
    stop_and_wait(a, slug_a)
    c.get_by_text("Training: step").first.wait_for(timeout=60_000)  # its turn came
    stop_and_wait(b, slug_b)
    stop_and_wait(c, "playground")
    slug, query = HEAVY_LINKS[2]
    d = open_link(contexts[0], server, slug, query)
    train_fitted(d, slug)
    stop_and_wait(d, slug)
    for page in (a, b, c, d):
        assert_no_exception(page)
    for ctx in contexts:
        ctx.close()


def test_closing_the_tab_stops_its_run_and_frees_its_slot(browser, server):
    contexts = [browser.new_context() for _ in range(3)]
    pages = [open_link(ctx, server, "playground", LONG_PLAYGROUND) for ctx in contexts]
    for page in pages[:2]:
        train_button(page, "playground").click()
        page.get_by_text("Training: step").first.wait_for(timeout=60_000)
    train_button(pages[2], "playground").click()
    alert(pages[2], "Waiting for a free slot").wait_for(timeout=30_000)
    contexts[0].close()  # the tab (and its session) goes away: its run must end
    pages[2].get_by_text("Training: step").first.wait_for(timeout=60_000)
    for page in pages[1:]:
        stop_and_wait(page, "playground")
    for ctx in contexts[1:]:
        ctx.close()
