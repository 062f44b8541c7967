"""A page's runs: Train and Stop, the budget's estimate, the live panel while a run trains, and
its final state once it has ended.

While a run trains the page does not rerun: one components-v2 element per experiment, the
live panel (panel.js), receives the frames the worker draws over a WebSocket (server/channel.py)
and redraws its charts in place. The panel is on the page before any run, connected to its
channel, so a run's first frame reaches it without waiting for the rerun that Train causes.
When the run ends, the panel asks for one rerun, and the page draws the final state with the
same figure functions, plus what needs the weights.

Runs belong to the browser session through a session-scoped resource: closing the tab releases
it, which stops the session's runs and frees their slots for other learners.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from components import controls
from components.views import NUMBERS, Views, cells
from labs.core.budget import Limits, duration, judge, measured_speed, size
from labs.core.device import pick_device
from labs.core.runner import Experiment, RunState, RunView, TrainingRun
from labs.core.workers import executor
from server.channel import HUB, Channel, owner_of
from server.routes import XSRF_COOKIE, live_path, plotly_url

HERE = Path(__file__).resolve().parent
PANEL = st.components.v2.component(
    "dllab_live_panel",
    js=(HERE / "panel.js").read_text(encoding="utf-8"),
    css=(HERE / "panel.css").read_text(encoding="utf-8"),
    isolate_styles=False,  # plotly.js styles its charts from the document's head
)


def _stop_all(runs: dict[str, TrainingRun]) -> None:
    for run in runs.values():
        run.stop()


@st.cache_resource(scope="session", on_release=_stop_all, show_spinner=False)
def session_runs() -> dict[str, TrainingRun]:
    """This browser session's runs, by key ("page" or "page--experiment")."""
    return {}


def _close_all(channels: dict[str, Channel]) -> None:
    for channel in channels.values():
        channel.close()


@st.cache_resource(scope="session", on_release=_close_all, show_spinner=False)
def session_channels() -> dict[str, Channel]:
    """This browser session's live channels, one per experiment key."""
    return {}


def channel_for(key: str) -> Channel:
    """The experiment's channel for its next run (or its live one). Once a run on it has ended,
    a fresh token replaces it: the old one lapses shortly after, with its run."""
    channels = session_channels()
    channel = channels.get(key)
    if channel is None or channel.expired or channel.ended:
        channel = channels[key] = HUB.open(None, owner_of(st.context.cookies.get(XSRF_COOKIE)))
    return channel


def current_run(key: str) -> TrainingRun | None:
    return session_runs().get(key)


def start_run(key: str, experiment: Experiment, cfg, views: Views) -> TrainingRun:
    """Start a run; a learner has one live run per page, so any other one on the page stops.
    A run past the server's budget is refused at once, with what to lower."""
    runs = session_runs()
    page = key.split("--")[0]
    for other_key, other in runs.items():
        if other_key.split("--")[0] == page:
            other.stop()
    run = TrainingRun(
        experiment.train,
        cfg,
        pick_device(experiment.prefers_gpu),
        label=key,
        remote=executor() == "process",  # off the server's GIL, and killable
        cost=experiment.cost,
        views=views.draw,
    )
    runs[key] = run
    run.channel = channel_for(key)
    run.channel.attach(run)  # before it starts: the panel already listens on this channel
    return run.start()


def run_buttons(key: str, experiment: Experiment, cfg, views: Views) -> None:
    """Train / Stop buttons for one experiment, and what the run will cost on this server.

    Both act in on_click callbacks, which run before the script: the buttons are then drawn
    knowing whether a run is alive (Stop enabled during the run, not one click later). They
    live in a fragment: a click reruns only them, so the browser is free to draw the run's
    first frame at once; the panel then asks for the page's rerun (components/panel.js).
    """
    _buttons(key, experiment, cfg, views)


@st.fragment
def _buttons(key: str, experiment: Experiment, cfg, views: Views) -> None:
    left, right = st.columns(2)
    left.button(
        views.button,
        type="primary",
        key=f"{key}-train",
        width="stretch",
        on_click=start_run,
        args=(key, experiment, cfg, views),
    )
    run = current_run(key)
    right.button(
        "Stop",
        key=f"{key}-stop",
        width="stretch",
        on_click=_stop,
        args=(key,),
        disabled=run is None or run.status()["state"] not in ("queued", "running"),
    )
    _estimate(key, experiment, cfg)


def _stop(key: str) -> None:
    run = current_run(key)
    if run is not None:
        run.stop()


def _estimate(key: str, experiment: Experiment, cfg) -> None:
    """The run's estimated time and memory, and, past the budget, settings that fit."""
    device = pick_device(experiment.prefers_gpu)
    verdict = judge(cfg, experiment.cost, Limits.from_env(), measured_speed(device.type))
    if verdict.fits:
        st.caption(
            f"This run: about {duration(verdict.seconds)} and {size(verdict.memory_bytes)} "
            f"on this server's {device.type.upper()}. {verdict.message}"
        )
        return
    st.warning(verdict.message, icon="🧮")
    if verdict.suggestion and st.button(
        "Use settings that fit",
        key=f"{key}-fit",
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
        "path": live_path(channel.token),
        "plotly": plotly_url(),
        "layout": views.layout,
        "final": view.id if view is not None and not view.alive else None,
        "live": view.id if view is not None and view.alive else None,
    }
    PANEL(key=f"{key}-live", data=data, on_started_change=lambda: None, on_ended_change=lambda: None)


def preload() -> None:
    """On every page, hidden: the browser loads plotly.js before the first Train click, so the
    first live chart waits for nothing but the run's first frame."""
    PANEL(key="dllab-plotly-preload", data={"preload": True, "plotly": plotly_url()})


def status(view: RunView) -> None:
    """How an ended run ended, in one line, and what the learner should know about it."""
    if view.state == RunState.DONE:
        st.success(f"Done in {view.elapsed_s:.1f} s.", icon="✅")
    elif view.state == RunState.STOPPED:
        st.warning(view.message or "Stopped.", icon="⏹️")
    elif view.state == RunState.FAILED:
        st.error(view.message, icon="⚠️")
    for note in view.notes:
        st.info(note, icon="ℹ️")


def final_parts(key: str, views: Views, view: RunView) -> dict:
    """The ended run's parts, drawn once (a rerun after each widget change reuses them)."""
    memo = st.session_state.get(f"{key}.__final")
    if memo is None or memo[0] != view.id:
        memo = (view.id, views.draw(view))
        st.session_state[f"{key}.__final"] = memo
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
    return f"{key}-chart-{name}"
