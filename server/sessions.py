"""Which runs and live channels a browser session holds, and the run policy: one live run per
page, started and stopped here.

Both registries are session-scoped resources: when the browser session ends (the tab closed),
Streamlit releases them, which stops the session's runs (their slots go to other learners) and
closes its channels (their tokens stop working at once).

A run key is the page's slug, or "<slug>--<part>" for one of several experiments on a page
(chapters.run_key); the key's page is what "one run per page" counts.
"""

from __future__ import annotations

import streamlit as st

from chapters import page_of
from figures.views import Views
from labs.core.contract import Experiment
from labs.core.device import pick_device
from labs.core.runner import TrainingRun
from server.channel import HUB, Channel, owner_of
from server.learners import LEDGER, learner_id
from server.routes import XSRF_COOKIE


def _stop_all(runs: dict[str, TrainingRun]) -> None:
    for run in runs.values():
        run.stop()


@st.cache_resource(scope="session", on_release=_stop_all, show_spinner=False)
def session_runs() -> dict[str, TrainingRun]:
    """This browser session's runs, by run key."""
    return {}


def _close_all(channels: dict[str, Channel]) -> None:
    for channel in channels.values():
        channel.close()


@st.cache_resource(scope="session", on_release=_close_all, show_spinner=False)
def session_channels() -> dict[str, Channel]:
    """This browser session's live channels, one per run key."""
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
    """Start a run of `experiment` under `key`: a learner has one live run per page, so any other
    run on the page stops. A run past the server's budget, or past what one learner may hold
    (server/learners.py), is refused at once, in words. The run is attached to the experiment's
    channel before it starts: the page's live panel already listens there, so its first frame
    goes out as soon as it is drawn."""
    runs, learner = session_runs(), learner_id()
    replaced = tuple(other for other_key, other in runs.items() if page_of(other_key) == page_of(key))
    for other in replaced:
        other.stop()
    run = TrainingRun(
        experiment.train,
        cfg,
        pick_device(experiment.prefers_gpu),
        label=key,
        cost=experiment.cost,
        views=views.draw,
        learner=learner,
    )
    runs[key] = run
    run.channel = channel_for(key)
    run.channel.attach(run)
    refusal = LEDGER.refusal(learner, replaced)
    if refusal:
        return run.refuse(refusal)
    LEDGER.track(learner, key, run)
    return run.start()


def stop_run(key: str) -> None:
    """Ask the run of `key` to end between two steps; it keeps what it learned."""
    run = current_run(key)
    if run is not None:
        run.stop()
