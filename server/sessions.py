"""Which runs and live channels a browser session holds, and the run policy: one live run per
page, started and stopped here.

A session's runs and channels are a session-scoped resource. Streamlit releases it as soon as
the session's socket drops, though it keeps the session itself for a reconnection (its
disconnectedSessionTTL). So a release is not yet a leave: the runs keep training and the
channels keep their tokens for RECONNECT_GRACE_SECONDS. A session that comes back within it
(a network blip, a laptop lid) takes them back at its next script run; otherwise its runs stop
(their slots go to other learners) and its channels close (their tokens stop working).

A run key is the page's slug, or "<slug>--<part>" for one of several experiments on a page
(chapters.run_key); the key's page is what "one run per page" counts.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from chapters import page_of
from figures.views import Views
from labs.core.contract import Experiment
from labs.core.device import pick_device
from labs.core.runner import TrainingRun
from server import serving
from server.channel import HUB, Channel, owner_of
from server.learners import LEDGER, learner_id
from server.routes import XSRF_COOKIE

log = logging.getLogger("dllab.sessions")
RECONNECT_GRACE_SECONDS = float(os.environ.get("DLLAB_RECONNECT_GRACE_SECONDS", "10"))


@dataclass
class Held:
    """What one browser session holds: its runs and its live channels, by run key."""

    session_id: str
    runs: dict[str, TrainingRun] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    endpoints: dict[str, str] = field(default_factory=dict)  # run key -> token of its served model
    releases: int = 0  # how often Streamlit let go of it: only the latest release's timer counts

    def end(self) -> None:
        """The session has gone for good: stop its runs, close its channels."""
        live = [key for key, run in self.runs.items() if hasattr(run, "view") and run.view().alive]
        if live:  # a browser that did not come back: say so in the server's log
            log.warning(
                "session %s gone, not back within %g s: stopping %s",
                self.session_id,
                RECONNECT_GRACE_SECONDS,
                live,
            )
        for run in self.runs.values():
            run.stop()
        for channel in self.channels.values():
            channel.close()
        for token in self.endpoints.values():
            serving.stop_serving(token)


_AWAY: dict[str, Held] = {}  # sessions whose socket dropped, within their grace
_AWAY_LOCK = threading.Lock()


def _released(held: Held) -> None:
    """Streamlit let go of a session (its socket dropped): end what it held unless it is back
    within the grace."""
    with _AWAY_LOCK:
        held.releases += 1
        _AWAY[held.session_id] = held
    _wait_grace(held, held.releases)


def _wait_grace(held: Held, release: int) -> None:
    timer = threading.Timer(RECONNECT_GRACE_SECONDS, _grace_over, args=(held, release))
    timer.daemon = True
    timer.start()


def _grace_over(held: Held, release: int) -> None:
    """The grace after a release is over: what the session held ends unless its browser is
    connected again. Whether the Held was taken back does not decide it: a script run still
    going when the socket dropped takes it back too (Streamlit stops it between two elements),
    and that session is gone all the same."""
    with _AWAY_LOCK:
        if held.releases != release:
            return  # released again since: that release's grace decides
        if _connected(held.session_id):
            if _AWAY.get(held.session_id) is held:  # back, but not drawn yet: look again later
                _wait_grace(held, release)
            return
        if _AWAY.get(held.session_id) is held:
            del _AWAY[held.session_id]
    held.end()


def _connected(session_id: str) -> bool:
    """Whether a browser is connected to the session now."""
    from streamlit import runtime

    return runtime.exists() and runtime.get_instance().is_active_session(session_id)


@st.cache_resource(scope="session", on_release=_released, show_spinner=False)
def _held() -> Held:
    """This session's runs and channels: the ones it left within the grace, else new ones."""
    ctx = get_script_run_ctx()
    session_id = ctx.session_id if ctx else ""
    with _AWAY_LOCK:
        back = _AWAY.pop(session_id, None)
    return back if back is not None else Held(session_id)


def session_runs() -> dict[str, TrainingRun]:
    """This browser session's runs, by run key."""
    return _held().runs


def session_channels() -> dict[str, Channel]:
    """This browser session's live channels, one per run key."""
    return _held().channels


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
        batch=_batch_of(experiment, cfg),
    )
    runs[key] = run
    run.channel = channel_for(key)
    run.channel.attach(run)
    refusal = LEDGER.refusal(learner, replaced)
    if refusal:
        return run.refuse(refusal)
    LEDGER.track(learner, key, run)
    return run.start()


def _batch_of(experiment: Experiment, cfg) -> tuple | None:
    """(key, stack) when runs of `cfg` may train together with others' (labs/core/batches.py)."""
    key = experiment.batch_key(cfg)
    return None if key is None else (key, experiment.stack)


def stop_run(key: str) -> None:
    """Ask the run of `key` to end between two steps; it keeps what it learned."""
    run = current_run(key)
    if run is not None:
        run.stop()


def serve_model(key: str, endpoint: serving.Endpoint) -> str:
    """Serve `endpoint` for this session's page `key` (its earlier model there goes off the
    air): the token of its address. It ends with the session."""
    held = _held()
    if key in held.endpoints:
        serving.stop_serving(held.endpoints[key])
    held.endpoints[key] = serving.serve(endpoint)
    return held.endpoints[key]


def served_model(key: str) -> tuple[str, serving.Endpoint] | None:
    """The token and endpoint this session serves for page `key`, while it is on the air."""
    token = _held().endpoints.get(key)
    endpoint = serving.served(token) if token else None
    return (token, endpoint) if endpoint is not None else None
