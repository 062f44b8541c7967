"""The live-run panel: Train and Stop, status with queue position, progress and ETA, and a
fragment that redraws the charts a few times a second while (and only while) a run is alive.

Runs belong to the browser session through a session-scoped resource: closing the tab releases
it, which stops the session's runs and frees their slots for other learners.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from components import controls
from labs.core.budget import Limits, duration, judge, measured_speed, size
from labs.core.device import pick_device
from labs.core.runner import SLOTS, Experiment, RunState, RunView, TrainingRun
from labs.core.workers import executor

REDRAW_SECONDS = 0.5  # 2 Hz: live enough; each tick costs ~50-180 ms of server CPU (bench)
FIRST_UPDATE_WAIT = 0.3  # the Train click's own rerun shows the first snapshot if it is quick


def _stop_all(runs: dict[str, TrainingRun]) -> None:
    for run in runs.values():
        run.stop()


@st.cache_resource(scope="session", on_release=_stop_all, show_spinner=False)
def session_runs() -> dict[str, TrainingRun]:
    """This browser session's runs, by key ("page" or "page--experiment")."""
    return {}


def current_run(key: str) -> TrainingRun | None:
    return session_runs().get(key)


def start_run(key: str, experiment: Experiment, cfg) -> TrainingRun:
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
    ).start()
    runs[key] = run
    run.wait_for_first_snapshot(FIRST_UPDATE_WAIT)
    return run


def run_buttons(key: str, experiment: Experiment, cfg, label: str = "Train") -> None:
    """Train / Stop buttons for one experiment, and what the run will cost on this server.

    Both act in on_click callbacks, which run before the script: the buttons are then drawn
    knowing whether a run is alive (Stop enabled during the run, not one click later).
    """
    left, right = st.columns(2)
    left.button(
        label,
        type="primary",
        key=f"{key}-train",
        width="stretch",
        on_click=start_run,
        args=(key, experiment, cfg),
    )
    run = current_run(key)
    right.button(
        "Stop",
        key=f"{key}-stop",
        width="stretch",
        on_click=_stop,
        args=(key,),
        disabled=run is None or not run.view().alive,
    )
    _estimate(key, experiment, cfg)


def _estimate(key: str, experiment: Experiment, cfg) -> None:
    """The run's estimated time and memory, and, past the budget, settings that fit."""
    device = pick_device(experiment.prefers_gpu)
    verdict = judge(cfg, experiment.cost, Limits.from_env(), measured_speed(device.type))
    if verdict.fits:
        st.caption(
            f"This run: about {duration(verdict.seconds)} and {size(verdict.memory_bytes)} "
            f"on this server's {device.type.upper()}."
        )
        return
    st.warning(verdict.message, icon="🧮")
    if verdict.suggestion:
        st.button(
            "Use settings that fit",
            key=f"{key}-fit",
            on_click=_use_settings,
            args=(type(cfg), key, verdict.suggestion),
        )


def _use_settings(cls, key: str, settings: dict) -> None:
    for name, value in settings.items():
        controls.set_control(cls, key, name, value)


def _stop(key: str) -> None:
    run = current_run(key)
    if run is not None:
        run.stop()


def status(view: RunView | None) -> None:
    """One line for the run's state: queue position, progress with ETA, or how it ended."""
    if view is None:
        st.caption("Press **Train** to start a run. Sliders stay usable while it trains.")
    elif view.state == RunState.QUEUED:
        busy = sum(s.active for s in SLOTS.values())
        st.info(
            f"Waiting for a free slot: position {view.queue_position or 1} in the queue "
            f"({busy} runs training now).",
            icon="⏳",
        )
    elif view.state == RunState.RUNNING:
        eta = f" · about {view.eta_s:.0f} s left" if view.eta_s is not None else ""
        step = f"step {view.step:,} of {view.total_steps:,}" if view.total_steps else "starting"
        doing = "Stopping" if view.stopping else "Training"
        st.progress(min(view.progress, 1.0), text=f"{doing}: {step}{eta}")
    elif view.state == RunState.DONE:
        st.success(f"Done in {view.elapsed_s:.1f} s.", icon="✅")
    elif view.state == RunState.STOPPED:
        st.warning(view.message or "Stopped.", icon="⏹️")
    else:
        st.error(view.message, icon="⚠️")
    for note in view.notes if view else []:
        st.info(note, icon="ℹ️")


def live(key: str, draw: Callable[[RunView | None], None]) -> None:
    """Draw `draw(view)` now and, while the run is alive, again every REDRAW_SECONDS.

    When the run ends, one full rerun turns the polling off (and lets the page show what needs
    the final weights: downloads, attributions).
    """
    run = current_run(key)
    polling = run is not None and run.view().alive

    @st.fragment(run_every=REDRAW_SECONDS if polling else None)
    def redraw():
        current = current_run(key)
        view = current.view() if current else None
        status(view)
        draw(view)
        if polling and (view is None or not view.alive):
            st.rerun()

    redraw()
