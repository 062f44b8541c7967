"""How a run reaches the screen, measured in a real browser (printed, never asserted).

    make bench-live        # or: .venv/bin/python -m bench.live

A real `streamlit run app.py` and headless Chromium.

First every chapter, one learner, default settings (its page's first experiment): click →
first number, click → first chart, the distinct training states the browser showed per second
while the run trained (status lines whose step count moved, from the first to the last), and
how long that was. Then, for the playground with a long run (?epochs=1000) and the CNN chapter,
K = 1, 4 and 8 learners in separate browser contexts press Train together: the same per
learner, and the server process's (not its workers') CPU seconds per frame delivered, read
from /proc while they train.

    .venv/bin/python -m bench.live [--chapters playground,gans] [--no-class]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from chapters import CHAPTERS
from tests.browser import ARGS, CHROMIUM, IDLE, lab_server

WINDOW_SECONDS = 8.0  # frames are counted over this long, once every learner is streaming
PAGES = [("playground", "epochs=1000"), ("convnets", "epochs=30")]
LEARNERS = (1, 4, 8)

# Counts, in the page, the paints that showed a new step count (a distinct training state: the
# status line's text alone also moves with its ETA; looked at as each frame is painted, so two
# lines written between two paints count once), when the first and the last came, how often the
# main picture (the layout's first chart) was redrawn, and when the first number and the first
# chart appeared.
PROBE_JS = """() => {
  window.__bench = {states: 0, lastStatus: '', firstNumber: null, firstChart: null,
                    firstState: null, lastState: null, ended: false, mainDraws: 0};
  const b = window.__bench;
  const painted = () => {
    const status = document.querySelector('.dl-panel.dl-live .dl-status span')?.textContent || '';
    const step = status.match(/step ([0-9,]+)/)?.[1];  // a state is a step count (the ETA moves alone)
    if (step !== undefined && step !== b.lastStatus) {
      b.states += 1; b.lastStatus = step; b.lastState = performance.now();
      b.lastStep = Number(step.replace(/,/g, ''));
      if (b.firstState === null) { b.firstState = b.lastState; b.firstStep = b.lastStep; }
    }
    const main = document.querySelector('.dl-panel.dl-live .dl-row .dl-part');
    b.mainDraws = Number(main?.dataset.drawings || 0);
    if (!b.ended) requestAnimationFrame(painted);
  };
  requestAnimationFrame(painted);
  new MutationObserver(() => {
    const state = document.querySelector('.dl-panel.dl-live .dl-status')?.dataset.state;
    if (['done', 'stopped', 'failed'].includes(state)) b.ended = true;
    if (b.firstNumber === null && document.querySelector('.dl-live .dl-number b')?.textContent)
      b.firstNumber = performance.now();
    if (b.firstChart === null && document.querySelector('.dl-panel .js-plotly-plot'))
      b.firstChart = performance.now();
  }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def server_cpu_seconds(port: int) -> float:
    """utime + stime of the process listening on `port` (the Streamlit server, not a worker)."""
    pid = _listener(port)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _listener(port: int) -> int:
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if int(parts[1].split(":")[1], 16) == port and parts[3] == "0A":  # LISTEN
                inode = parts[9]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise RuntimeError(f"nobody listens on {port}")


def wait_for_workers(url: str, timeout: float = 300) -> None:
    """Until every worker the server started has imported torch and warmed up ("warm workers")."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            workers = json.loads(urllib.request.urlopen(f"{url}/_lab/status", timeout=10).read())["workers"]
        except OSError:  # eight workers importing torch on two cores: the server answers late
            time.sleep(1)
            continue
        if workers["idle"] and workers["ready"] == workers["idle"]:
            time.sleep(2)  # let the last one's warm-up settle
            return
        time.sleep(1)
    raise RuntimeError("the workers did not get ready")


def frames(page) -> int:
    return page.evaluate("() => Number(document.querySelector('.dl-panel.dl-live')?.dataset.frames || 0)")


# Resolves once the page's main thread has gone QUIET_MS without a long task (> 50 ms).
UNTIL_QUIET_JS = """(quietMs) => new Promise((done) => {
  let timer = setTimeout(done, quietMs);
  new PerformanceObserver(() => { clearTimeout(timer); timer = setTimeout(done, quietMs); })
    .observe({type: 'longtask', buffered: true});
})"""
QUIET_MS = 300


def ready_to_train(page, key: str) -> None:
    """As a learner finds the page when they press Train, having read it: the panel connected,
    plotly.js loaded and the page done drawing. (Clicked while the browser still parsed
    plotly.js or drew the page, the click waited for it: a first number at 0.3-0.4 s instead
    of 0.1 in some runs, the first chapter measured most often.) Then the probe listens."""
    page.wait_for_selector(f".st-key-{key}-live .dl-panel[data-connected='1']", state="attached")
    page.wait_for_function("() => !!window.Plotly", timeout=120_000)
    page.evaluate(UNTIL_QUIET_JS, QUIET_MS)
    page.evaluate(PROBE_JS)


def measure(browser, url: str, slug: str, query: str, k: int) -> dict:
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(k)]
    pages = []
    for ctx in contexts:
        page = ctx.new_page()
        page.goto(f"{url}/{slug}?{query}")
        page.wait_for_selector(IDLE, timeout=120_000)
        ready_to_train(page, slug)
        pages.append(page)
    clicked = []
    for page in pages:  # "together": one after the other, as fast as the browser takes clicks
        clicked.append(page.evaluate("() => performance.now()"))
        page.locator(f".st-key-{slug}-train button").click(timeout=120_000)  # 8 pages on 2 cores: slow
    for page in pages:
        page.wait_for_function("() => window.__bench.firstChart !== null", timeout=120_000)
    for page in pages:  # the page's one rerun into its live state is done: steady state from here
        page.get_by_text("to start a run").wait_for(state="detached", timeout=120_000)
        page.wait_for_selector(IDLE, timeout=120_000)
    port = int(url.rsplit(":", 1)[1])
    before_frames, before_cpu = sum(frames(p) for p in pages), server_cpu_seconds(port)
    before_states = [p.evaluate("() => window.__bench.states") for p in pages]
    time.sleep(WINDOW_SECONDS)
    after_states = [p.evaluate("() => window.__bench.states") for p in pages]
    delivered = sum(frames(p) for p in pages) - before_frames
    cpu = server_cpu_seconds(port) - before_cpu
    marks = [p.evaluate("() => window.__bench") for p in pages]
    for page in pages:  # a run that ended already has nothing to stop
        stop = page.locator(f".st-key-{slug}-stop button")
        if stop.is_enabled():
            stop.click()
    for ctx in contexts:
        ctx.close()
    rates = sorted((a - b) / WINDOW_SECONDS for a, b in zip(after_states, before_states))
    first_chart = sorted((m["firstChart"] - c) / 1000 for m, c in zip(marks, clicked))
    first_number = sorted((m["firstNumber"] - c) / 1000 for m, c in zip(marks, clicked) if m["firstNumber"])
    return {
        "k": k,
        "states_p50": statistics.median(rates),
        "states_p5": rates[max(0, int(0.05 * len(rates)) - 1)] if len(rates) > 1 else rates[0],
        "first_number_p50": statistics.median(first_number) if first_number else float("nan"),
        "first_chart_p50": statistics.median(first_chart),
        "first_chart_p95": first_chart[min(len(first_chart) - 1, int(0.95 * len(first_chart)))],
        "cpu_ms_per_frame": 1000 * cpu / max(delivered, 1),
        "frames": delivered,
    }


RUN_CAP_SECONDS = 30.0  # a chapter's default run is watched this long at most, then stopped


def measure_chapter(browser, url: str, chapter) -> dict:
    """One learner presses Train on the chapter's first experiment at its default settings and
    watches until the run ends (or RUN_CAP_SECONDS)."""
    key = chapter.run_keys[0]
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.goto(f"{url}/{chapter.slug}")
    page.wait_for_selector(IDLE, timeout=120_000)
    ready_to_train(page, key)
    clicked = page.evaluate("() => performance.now()")
    page.locator(f".st-key-{key}-train button").click()
    ended = True
    try:
        page.wait_for_function("() => window.__bench.ended", timeout=RUN_CAP_SECONDS * 1000)
    except PlaywrightTimeout:
        ended = False
        page.locator(f".st-key-{key}-stop button").click()
    b = page.evaluate("() => window.__bench")
    ctx.close()
    trained = (b["lastState"] - b["firstState"]) / 1000 if b["firstState"] is not None else 0.0
    since = lambda mark: (mark - clicked) / 1000 if mark is not None else float("nan")  # noqa: E731
    return {
        "states": (b["states"] - 1) / trained if trained > 0 else float("nan"),
        "steps": (b["lastStep"] - b["firstStep"]) / trained if trained > 0 else float("nan"),
        "shown": b["states"],
        "main": b["mainDraws"] / trained if trained > 0 else float("nan"),
        "seconds": trained,
        "first_number": since(b["firstNumber"]),
        "first_chart": since(b["firstChart"]),
        "ended": ended,
    }


def chapters_table(browser, url: str, slugs: list[str] | None) -> None:
    print(
        "\n| chapter | states/s | main chart/s | steps/s | states shown | training (s) "
        "| first number (s) | first chart (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for chapter in CHAPTERS:
        if slugs and chapter.slug not in slugs:
            continue
        r = measure_chapter(browser, url, chapter)
        cut = "" if r["ended"] else f" (stopped at {RUN_CAP_SECONDS:.0f} s)"
        print(
            f"| {chapter.code} {chapter.slug} | {r['states']:.1f} | {r['main']:.1f} | {r['steps']:.0f} "
            f"| {r['shown']} | "
            f"{r['seconds']:.1f}{cut} | {r['first_number']:.2f} | {r['first_chart']:.2f} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chapters", help="only these chapters' slugs, comma-separated")
    parser.add_argument("--no-class", action="store_true", help="without the K = 1, 4, 8 table")
    parser.add_argument("--no-chapters", action="store_true", help="without the every-chapter table")
    args = parser.parse_args(argv)
    cpus = os.cpu_count()
    print(f"{cpus} cores; server with DLLAB_CPU_RUNS=8 so that every learner trains at once")
    with lab_server(DLLAB_CPU_RUNS="8") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        warm = browser.new_page()  # the first page load is not measured
        warm.goto(f"{url}/playground")
        warm.wait_for_selector(IDLE, timeout=120_000)
        warm.close()
        wait_for_workers(url)
        if not args.no_chapters:
            chapters_table(browser, url, args.chapters.split(",") if args.chapters else None)
        if args.no_class:
            browser.close()
            return
        head = "\npage        K  states/s p50  p5   click→number  click→chart p50  p95   server ms/frame"
        print(head)
        for slug, query in PAGES:
            for k in LEARNERS:
                r = measure(browser, url, slug, query, k)
                print(
                    f"{slug:10} {k:2} {r['states_p50']:9.1f} {r['states_p5']:5.1f} "
                    f"{r['first_number_p50']:12.2f} {r['first_chart_p50']:15.2f} {r['first_chart_p95']:5.2f}"
                    f" {r['cpu_ms_per_frame']:15.2f}   ({r['frames']} frames)",
                    flush=True,
                )
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
