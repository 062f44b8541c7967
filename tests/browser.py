"""The browser suites' machinery: a real `streamlit run` on a free port (`lab_server`), Debian's
Chromium through Playwright, and waits on states (frame counters, status lines, alerts).
Test modules import the fixtures `server` and `browser` from here."""

import ctypes
import os
import signal
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

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
LOGS = ROOT / "artifacts" / "logs"  # each test server's own log, kept for a failed run
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


def quiet_free_ports(count: int = 1) -> int:
    """The first of `count` free consecutive ports below the kernel's ephemeral range (32768 and
    up) and above Ray's worker ports (10002-19999): a server that binds them late (nginx, after
    a Ray head started) cannot find them taken meanwhile by a Ray process that asked the kernel
    for any port (a gRPC server once answered the class host's health check)."""
    import random

    for _ in range(200):
        first = random.randrange(20000, 32000 - count)
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError("no free ports between 20000 and 32000")


def ends_with_this_process():
    """A `preexec_fn` for a server a test starts: the kernel sends it SIGTERM when the test
    process dies, even killed with -9, so a killed pytest leaves no server, cluster or proxy
    running (Linux's parent-death signal)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    pr_set_pdeathsig = 1

    def in_child() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return in_child


@contextmanager
def lab_server(*flags: str, base: str = "", **settings: str):
    """A real `streamlit run app.py` on a free port (two CPU run slots unless `settings` say
    otherwise); yields its URL."""
    port = free_port()
    env = {**os.environ, "DLLAB_ALLOW_DOWNLOAD": "0", "DLLAB_CPU_RUNS": "2", **settings}
    # The server's log goes to a file, never to an unread pipe: once a pipe's 64 KiB fill up,
    # every thread that logs (a run's, a channel's) blocks, and runs hang mid-way.
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"lab-server-{port}.log"
    env.pop("DLLAB_EXECUTOR", None)  # the real thing: worker processes
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    proc = subprocess.Popen(
        [*command, "--server.address", "127.0.0.1", *flags],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        preexec_fn=ends_with_this_process(),
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
        raise RuntimeError(f"streamlit did not start:\n{log.read_text(errors='replace')[-3000:]}")
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
    raise AssertionError(f"{what}: still {page.evaluate(js)!r} after {timeout} s; {_seen(page)}")


# What a failed wait reports of the page: its live panels and what they say, its alerts.
SEEN_JS = """() => ({
  panels: Array.from(document.querySelectorAll('.dl-panel')).map(p => ({
    live: p.classList.contains('dl-live'), frames: p.dataset.frames,
    status: p.querySelector('.dl-status')?.textContent || ''})),
  alerts: Array.from(document.querySelectorAll('[data-testid=stAlert]')).map(a => a.innerText),
  script: document.querySelector('[data-testid=stApp]')?.dataset.testScriptState})"""


def _seen(page) -> str:
    try:
        return f"the page shows {page.evaluate(SEEN_JS)}"
    except Exception as err:  # the page itself is gone: say so rather than hide the first failure
        return f"the page cannot be read ({err})"


def frames_beyond(page, n, timeout=90):
    return wait_until(page, FRAMES_JS, lambda f: f > n, f"frames beyond {n}", timeout)


def status_says(page, text, timeout=90):
    return wait_until(page, STATUS_JS, lambda s: text in s, f"panel status '{text}'", timeout)


def alert(page, text):
    """A Streamlit status box (success, info, warning, error) that says `text`."""
    return page.locator("[data-testid=stAlert]", has_text=text).first
