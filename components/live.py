"""What a page shows of its runs: Train and Stop, the budget's estimate, the live panel while a
run trains, and its final state once it has ended. Which runs a session holds, and starting and
stopping them, is the server's (server/sessions.py).

While a run trains the page does not rerun: one components-v2 element per experiment, the
live panel (panel.js), receives the frames the worker draws over a WebSocket (server/channel.py)
and redraws its charts in place. The panel is on the page before any run, connected to its
channel, so a run's first frame reaches it without waiting for the rerun that Train causes.
When the run ends, the panel asks for one rerun, and the page draws the final state with the
same figure functions, plus what needs the weights.

The panel is told the run states' names (labs/core/runner.py RunState) rather than knowing them.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from components import controls
from components.keys import state_key, widget_key
from figures.views import NUMBERS, Views, cells
from labs.core.budget import Limits, duration, judge, measured_speed, size
from labs.core.contract import Experiment
from labs.core.device import pick_device
from labs.core.runner import ENDED, RunState, RunView
from server.channel import IDLE
from server.learners import LEDGER, learner_id
from server.routes import live_path, plotly_url
from server.sessions import channel_for, current_run, start_run, stop_run

HERE = Path(__file__).resolve().parent
# inplace.js first: the panel redraws a chart whose data alone moved in place
PANEL_JS = "\n".join((HERE / name).read_text(encoding="utf-8") for name in ("inplace.js", "panel.js"))
PANEL = st.components.v2.component(
    "dllab_live_panel",
    js=PANEL_JS,
    css=(HERE / "panel.css").read_text(encoding="utf-8"),
    isolate_styles=False,  # plotly.js styles its charts from the document's head
)


# The run states' names, as the panel compares them, and which of them end a run; IDLE is what
# a channel says before the page's first run (server/channel.py).
STATES = {s.name: s.value for s in RunState} | {"ENDED": [s.value for s in ENDED], "IDLE": IDLE}


def run_buttons(key: str, experiment: Experiment, cfg, views: Views) -> None:
    """Train / Stop buttons for one experiment, and what the run will cost on this server.

    Both act in on_click callbacks, which run before the script: the buttons are then drawn
    knowing whether a run is alive (Stop enabled during the run, not one click later). They
    live in a fragment: a click reruns only them, so the browser is free to draw the run's
    first frame at once; the panel then asks for the page's rerun (components/panel.js).
    """
    _buttons(key, experiment, cfg, views)


def start_button(key: str, label: str, experiment: Experiment, cfg, views: Views, help: str = "") -> None:
    """One more way to start a run under `key`: `experiment` (e.g. its loop handed a checkpoint
    to resume from) with the settings `cfg`, replacing the page's run as Train would."""
    st.button(
        label,
        key=widget_key(key, "start-" + label[:24]),
        help=help or None,
        on_click=start_run,
        args=(key, experiment, cfg, views),
    )


@st.fragment
def _buttons(key: str, experiment: Experiment, cfg, views: Views) -> None:
    left, right = st.columns(2)
    left.button(
        views.button,
        type="primary",
        key=widget_key(key, "train"),
        width="stretch",
        on_click=start_run,
        args=(key, experiment, cfg, views),
    )
    run = current_run(key)
    right.button(
        "Stop",
        key=widget_key(key, "stop"),
        width="stretch",
        on_click=stop_run,
        args=(key,),
        disabled=run is None or not RunState(run.status()["state"]).alive,
    )
    _estimate(key, experiment, cfg)


def _estimate(key: str, experiment: Experiment, cfg) -> None:
    """The run's estimated time and memory, and, past the budget, settings that fit; the
    learner's training time when the server sets a quota, and when it comes back once spent."""
    spent = LEDGER.quota_refusal(learner_id())
    if spent:
        st.warning(spent, icon="⏳")
    device = pick_device(experiment.prefers_gpu)
    verdict = judge(cfg, experiment.cost, Limits.from_env(), measured_speed(device.type))
    if verdict.fits:
        st.caption(
            f"This run: about {duration(verdict.seconds)} and {size(verdict.memory_bytes)} "
            f"on this server's {device.type.upper()}. {verdict.message} {LEDGER.quota_line(learner_id())}"
        )
        return
    st.warning(verdict.message, icon="🧮")
    if verdict.suggestion and st.button(
        "Use settings that fit",
        key=widget_key(key, "fit"),
        on_click=_use_settings,
        args=(type(cfg), key, verdict.suggestion),
    ):
        st.rerun()  # the whole page: its sliders show the new settings


def _use_settings(cls, key: str, settings: dict) -> None:
    for name, value in settings.items():
        controls.set_control(cls, key, name, value)


def show(key: str, views: Views, selectable: tuple = (), replace=None) -> RunView | None:
    """The run of `key`: the live panel while it trains; once it has ended, how it ended and
    its final figures. Returns the ended run's view (for what needs its weights), else None.

    `selectable`: final figures a click selects points on; `replace(view) -> {name: part}`:
    final parts the page draws its own way (a picked point marked, a replay step)."""
    run = current_run(key)
    view = run.view() if run is not None else None
    panel(key, views, view)  # always first: the same element, idle, live or hidden, never remounted
    if view is None:
        st.caption(f"Press **{views.button}** to start a run. Sliders stay usable while it trains.")
        return None
    if view.alive:
        return None
    status(view)
    final(key, views, view, selectable, replace(view) if replace and view.history else {})
    return view


def panel(key: str, views: Views, view: RunView | None) -> None:
    """The experiment's live panel. It shows a run's frames from the first one on (before this
    page's rerun arrives) and hides once the page draws that run's final state itself."""
    channel = channel_for(key)
    data = {
        "token": channel.token,
        "path": live_path(),
        "plotly": plotly_url(),
        "layout": views.layout,
        "final": view.id if view is not None and not view.alive else None,
        "live": view.id if view is not None and view.alive else None,
        "states": STATES,
    }
    PANEL(
        key=widget_key(key, "live"), data=data, on_started_change=lambda: None, on_ended_change=lambda: None
    )


def preload() -> None:
    """On every page, hidden: the browser loads plotly.js before the first Train click, so the
    first live chart waits for nothing but the run's first frame."""
    PANEL(key="dllab-plotly-preload", data={"preload": True, "plotly": plotly_url()})


def done_words(elapsed_s: float, training_s: float, estimate_s: float | None) -> str:
    """How long a finished run took, its wait in the queue apart, and the estimate made before
    it beside that: how far to trust the next one (the panel's words too, components/panel.js)."""
    waited = elapsed_s - training_s
    took = f"Done in {elapsed_s:.1f} s"
    if waited >= 0.5:
        took += f": {waited:.1f} s in the queue, {training_s:.1f} s training"
    if estimate_s is not None:
        took += f" (estimated about {duration(estimate_s)})"
    return took + "."


def status(view: RunView) -> None:
    """How an ended run ended, in one line, and what the learner should know about it."""
    if view.state == RunState.DONE:
        st.success(done_words(view.elapsed_s, view.training_s, view.estimate_s), icon="✅")
    elif view.state == RunState.STOPPED:
        st.warning(view.message or "Stopped.", icon="⏹️")
    elif view.state == RunState.FAILED:
        st.error(view.message, icon="⚠️")
    for note in view.notes:
        st.info(note, icon="ℹ️")


def final_parts(key: str, views: Views, view: RunView) -> dict:
    """The ended run's parts, drawn once (a rerun after each widget change reuses them)."""
    memo = st.session_state.get(state_key(key, "final"))
    if memo is None or memo[0] != view.id:
        memo = (view.id, views.draw(view))
        st.session_state[state_key(key, "final")] = memo
    return memo[1]


def final(key: str, views: Views, view: RunView, selectable: tuple = (), replace: dict | None = None) -> None:
    """The same parts the live panel showed, in the same layout, drawn by Streamlit."""
    parts = {**final_parts(key, views, view), **(replace or {})}
    numbers = parts.get(NUMBERS)
    if numbers:
        for col, (label, value) in zip(st.columns(len(numbers)), numbers):
            col.metric(label, value)
    for row in cells(views.layout, [n for n in parts if n != NUMBERS]):
        columns = st.columns([width for _, width in row])
        for column, (names, _) in zip(columns, row):
            for name in names:
                _part(column, key, name, parts[name], name in selectable)


def _part(column, key: str, name: str, part: dict, selectable: bool) -> None:
    if "text" in part:
        column.markdown(f"**{part.get('title', '')}**")
        column.code(part["text"], language=None, wrap_lines=True)
        return
    options = {"on_select": "rerun", "selection_mode": "points"} if selectable else {}
    column.plotly_chart(part, key=chart_key(key, name), theme=None, **options)


def chart_key(key: str, name: str) -> str:
    """The widget key of a final chart (its selection is in st.session_state under it)."""
    return widget_key(key, f"chart-{name}")
