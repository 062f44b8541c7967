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
    page.get_by_text("Stopped: the curves and weights so far are kept.").wait_for(timeout=60_000)
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
