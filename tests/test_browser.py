"""The app as learners meet it: a real `streamlit run`, driven by Debian's Chromium.

Each page loads, trains with its live panel streaming frames into charts that are never
remounted, stops halfway keeping its partial curves, and trains a default run to the end;
learners stay isolated from each other's runs and streams; heavy links are cut to the budget;
a closed tab frees its slot; the app works under a base URL path, and a deep link can be a
fresh server's first request. Screenshots of every page land in artifacts/screenshots/.

Every wait is on a state (a frame counter, a status line), never on a run being slow enough.
"""

import json
import time
import urllib.request

import pytest

from chapters import CHAPTERS
from tests.browser import (
    IDLE,
    IDLE_CAPTIONS_JS,
    LAST_STEP_JS,
    LONG_PLAYGROUND,
    OVERFLOWING_JS,
    PANEL,
    SHOTS,
    alert,
    assert_no_exception,
    frames_beyond,
    lab_server,
    open_page,
    status_says,
    train_button,
    wait_until,
)


def server_status(server: str) -> dict:
    """The server's operator status (runs training and waiting per device kind)."""
    with urllib.request.urlopen(f"{server}/_lab/status", timeout=10) as answer:
        return json.loads(answer.read())


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


def test_with_both_slots_busy_a_third_learner_joins_a_batch_of_their_shape(browser, server):
    """Two learners' runs fill the server's two slots (each opened a batch of its own); a third
    learner's run of the same shape joins one of them at once instead of waiting, and each of
    the three sees their own run (labs/core/batches.py)."""
    contexts = [browser.new_context() for _ in range(3)]
    pages = [
        open_page(ctx, server, "playground", f"{LONG_PLAYGROUND}&seed={s}") for s, ctx in enumerate(contexts)
    ]
    for page in pages[:2]:
        train_button(page, "playground").click()
        status_says(page, "Training: step")
    train_button(pages[2], "playground").click()
    status_says(pages[2], "Training: step", timeout=30)  # never "Waiting for a free slot"
    runs = server_status(server)["runs"]["cpu"]
    assert runs["training"] == 2 and runs["waiting"] == 0  # three runs in two slots
    shown = {p.evaluate("() => document.querySelector('.dl-panel.dl-live').dataset.run") for p in pages}
    assert len(shown) == 3
    for page in pages:
        stop_and_wait(page, "playground")
        assert_no_exception(page)
    for ctx in contexts:
        ctx.close()


PLAYGROUND_PANEL = ".st-key-playground-live .dl-panel"  # this experiment's own panel, remounted or not
CONNECTED_JS = f"() => document.querySelector('{PLAYGROUND_PANEL}')?.dataset.connected || ''"
# the step the panel shows ("Training: step 1,234 of 250,000"), -1 before any
SHOWN_STEP_JS = f"""() => {{
  const text = document.querySelector('{PLAYGROUND_PANEL} .dl-status span')?.textContent || '';
  const m = text.match(/Training: step ([0-9][^ ]*) of/);
  return m ? Number(m[1].replace(/[^0-9]/g, '')) : -1;
}}"""
PANEL_STATE_JS = f"""() => {{
  const p = document.querySelector('{PLAYGROUND_PANEL}');
  return p ? {{...p.dataset, live: p.classList.contains('dl-live'),
               status: p.querySelector('.dl-status span')?.textContent}} : null;
}}"""


def test_a_dropped_connection_is_picked_up_again(browser, server):
    """The live socket drops mid-run (a network blip): the panel reconnects on its own and the
    learner sees the run's steps move on again, read from what the panel shows."""
    page = open_page(browser, server, "playground", LONG_PLAYGROUND)
    # the panel's socket is open (the server accepted it) before Train: on a busy machine a
    # click on a page still connecting can be lost, and this test is about the reconnection
    wait_until(page, CONNECTED_JS, lambda c: c == "1", "the live panel connected")
    train_button(page, "playground").click()
    step = wait_until(page, SHOWN_STEP_JS, lambda s: s > 0, "a training step shown")
    page.evaluate(f"() => document.querySelector('{PLAYGROUND_PANEL}').__panel.socket.close()")  # the blip
    try:  # shown steps move on again: the panel reconnected and the frames flow
        wait_until(page, SHOWN_STEP_JS, lambda s: s > step + 20, "steps shown after the drop")
        wait_until(page, CONNECTED_JS, lambda c: c == "1", "the live panel connected again", 10)
    except AssertionError as err:
        raise AssertionError(f"{err}; the panel: {page.evaluate(PANEL_STATE_JS)}") from None
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


# Every chart drawing made slow (150 ms, as a slow laptop draws a big chart), and a log of what
# the learner sees: each drawing, and each new step count on the progress line.
SLOW_DRAWINGS_JS = """() => {
  const seen = window.__seen = [];
  const react = window.Plotly.react;
  window.Plotly.react = function (...args) {
    const end = performance.now() + 150;
    while (performance.now() < end);
    seen.push('draw');
    return react.apply(this, args);
  };
  let last = '';
  new MutationObserver(() => {
    const status = document.querySelector('.dl-panel.dl-live .dl-status span')?.textContent || '';
    const step = status.match(/step ([0-9,]+)/)?.[1];
    if (step && step !== last) { last = step; seen.push('step'); }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
SEEN_JS = "() => window.__seen"


def test_the_progress_line_moves_while_slow_charts_take_their_turns(browser, server):
    """A browser slow to draw still sees the run move: the panel reads the next frame between
    two drawings (not once all of a frame's charts are drawn), so the step count changes more
    often than charts are drawn."""
    page = open_page(browser, server, "playground", LONG_PLAYGROUND)
    page.wait_for_function("() => window.Plotly !== undefined", timeout=90_000)
    page.evaluate(SLOW_DRAWINGS_JS)
    train_button(page, "playground").click()
    seen = wait_until(page, SEEN_JS, lambda s: s.count("draw") >= 40, "40 slow drawings", timeout=120)
    page.locator(".st-key-playground-stop button").click()
    alert(page, "Stopped").wait_for(timeout=120_000)
    page.close()
    # a drawing that follows another with the line standing still between them: a frame's
    # charts drawn back to back (all of them, each frame, when the panel read a frame only once
    # its charts were drawn: 23 of 40 drawings measured so; ~2 of 40 now)
    back_to_back = sum(a == b == "draw" for a, b in zip(seen, seen[1:]))
    assert back_to_back <= 0.25 * seen.count("draw"), f"{back_to_back} drawings back to back in {seen}"


# Open the live socket as a page would (the token first, then "ready"): a frame, or a refusal.
OPEN_JS = """([path, token]) => new Promise(done => {
  const ws = new WebSocket(`ws://${location.host}${path}`);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => { ws.send(token); ws.send('ready'); };
  ws.onmessage = (e) => {
    const text = typeof e.data === 'string' ? e.data : new TextDecoder().decode(e.data);
    const message = JSON.parse(text);
    done(message.refused ? `refused ${message.status}` : 'frame');
    ws.close();
  };
  ws.onerror = () => done('error');
  setTimeout(() => done('timeout'), 15000);
})"""


def test_another_browser_cannot_open_a_runs_stream(browser, server):
    owner, other = browser.new_context(), browser.new_context()
    page = open_page(owner, server, "playground", LONG_PLAYGROUND)
    train_button(page, "playground").click()
    frames_beyond(page, 0)
    live = page.evaluate(
        "() => { const d = document.querySelector('.dl-panel.dl-live').dataset; return [d.path, d.token]; }"
    )
    path, token = live
    assert page.evaluate(OPEN_JS, [path, token]) == "frame"  # the owner's own browser may open it twice
    stranger = open_page(other, server, "home", {})
    assert stranger.evaluate(OPEN_JS, [path, token]) == "refused 403"  # another browser session
    assert stranger.evaluate(OPEN_JS, [path, token[:-4] + "AAAA"]) == "refused 404"  # a wrong token
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


def test_one_browser_with_a_dozen_tabs_leaves_slots_for_another_learner(browser, server):
    """One browser opens 12 tabs of a long run and presses Train in each: it trains one run and
    queues one more; the other tabs are told which runs to stop. A second learner who arrives
    after all of that starts at once (the server has two run slots)."""
    hog = browser.new_context()
    tabs = [open_page(hog, server, "playground", LONG_PLAYGROUND) for _ in range(12)]
    for tab in tabs:
        train_button(tab, "playground").click()
    status_says(tabs[0], "Training: step")
    status_says(tabs[1], "Waiting for your other run to end", timeout=30)
    for tab in tabs[2:]:  # each refused in words that name the runs to stop
        alert(tab, "You already have 2 runs going").wait_for(timeout=60_000)
    newcomer = browser.new_context()
    page = open_page(newcomer, server, "playground", LONG_PLAYGROUND)
    train_button(page, "playground").click()
    status_says(page, "Training: step", timeout=60)  # not behind the first browser's tabs
    for tab in (page, tabs[1], tabs[0]):
        stop_and_wait(tab, "playground")
    for ctx in (hog, newcomer):
        ctx.close()


def test_closing_the_tab_stops_its_run_and_frees_its_slot(browser, server):
    """Three learners' runs of three shapes (runs of one shape would train as one batch):
    two train, the third waits until the first learner closes their tab."""
    contexts = [browser.new_context() for _ in range(3)]
    pages = [
        open_page(ctx, server, "playground", f"{LONG_PLAYGROUND}&units={units}")
        for ctx, units in zip(contexts, (6, 7, 8))
    ]
    for page in pages[:2]:
        train_button(page, "playground").click()
        status_says(page, "Training: step")
    train_button(pages[2], "playground").click()
    status_says(pages[2], "Waiting for a free slot", timeout=30)
    contexts[0].close()  # the tab (and its session) goes away: its run ends after the 10 s grace
    status_says(pages[2], "Training: step", timeout=30)
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


def test_under_a_base_url_path_pages_stream_and_a_deep_link_can_be_the_first_request(browser):
    """A fresh server behind a base path: its first request is a deep link, which lands on
    its page (not a legacy pages/ script), and the live panel streams under the prefix."""
    with lab_server("--server.baseUrlPath", "lab", base="/lab") as url:
        page = open_page(browser, url, "convnets", {"dataset": "digits8", "epochs": "30"})
        page.get_by_role("heading", name="7. Convolutional networks").wait_for(timeout=30_000)
        assert page.evaluate("() => location.pathname") == "/lab/convnets"
        nav = page.locator("[data-testid=stSidebarNav]")
        for chapter in CHAPTERS:  # the whole course at a first look, nothing behind "View more"
            assert nav.get_by_role("link", name=chapter.label).is_visible(), chapter.label
        train_button(page, "convnets").click()
        frames_beyond(page, 2)
        assert (
            page.evaluate("() => document.querySelector('.dl-panel.dl-live').dataset.path")
            == "/lab/_lab/live"
        )
        page.locator(".st-key-convnets-stop button").click()
        alert(page, "Stopped").wait_for(timeout=120_000)
        for chapter in CHAPTERS:  # every chapter's deep link lands on its own page
            page.goto(f"{url}/{chapter.slug}")
            page.get_by_role("heading", name=chapter.label).wait_for(timeout=60_000)
            assert_no_exception(page)
        page.close()
