"""A browser session's runs after its socket drops (server/sessions.py): they end once the grace
is over unless the browser is connected again, even when a script run that was still going
took them back after the drop (the tab was closed mid-rerun)."""

import threading

import pytest

from server import sessions
from server.sessions import Held

GRACE = 0.2


class _Run:
    def __init__(self):
        self.stopped = threading.Event()

    def stop(self):
        self.stopped.set()


@pytest.fixture
def browser_connected(monkeypatch):
    """Whether the session's browser is connected, as the test sets it."""
    connected = {"now": False}
    monkeypatch.setattr(sessions, "RECONNECT_GRACE_SECONDS", GRACE)
    monkeypatch.setattr(sessions, "_connected", lambda session_id: connected["now"])
    yield connected
    sessions._AWAY.clear()


def held_with_a_run(session_id: str) -> tuple[Held, _Run]:
    run = _Run()
    return Held(session_id, runs={"playground": run}), run


def take_back(session_id: str) -> Held | None:
    """What a script run of the session does first (sessions._held, outside Streamlit)."""
    with sessions._AWAY_LOCK:
        return sessions._AWAY.pop(session_id, None)


def test_a_closed_tab_s_run_stops_after_the_grace(browser_connected):
    held, run = held_with_a_run("closed")
    sessions._released(held)
    assert not run.stopped.wait(GRACE / 2)  # within the grace it still trains
    assert run.stopped.wait(5)
    assert "closed" not in sessions._AWAY


def test_a_script_run_still_going_when_the_tab_closed_does_not_keep_its_runs(browser_connected):
    held, run = held_with_a_run("closed-mid-rerun")
    sessions._released(held)
    assert take_back("closed-mid-rerun") is held  # the rerun in flight took it back; no browser
    assert run.stopped.wait(5)


def test_a_browser_back_within_the_grace_keeps_its_runs(browser_connected):
    held, run = held_with_a_run("blip")
    sessions._released(held)
    browser_connected["now"] = True
    assert take_back("blip") is held
    assert not run.stopped.wait(GRACE * 5)


def test_a_browser_back_but_not_drawn_yet_keeps_its_runs_for_its_next_script_run(browser_connected):
    held, run = held_with_a_run("slow")
    sessions._released(held)
    browser_connected["now"] = True
    assert not run.stopped.wait(GRACE * 3)  # connected: the grace is extended, not over
    assert take_back("slow") is held


def test_a_second_release_gets_a_grace_of_its_own(browser_connected):
    held, run = held_with_a_run("twice")
    sessions._released(held)
    browser_connected["now"] = True
    take_back("twice")
    threading.Event().wait(GRACE * 0.7)
    browser_connected["now"] = False
    sessions._released(held)  # dropped again: the first grace's timer no longer decides
    assert not run.stopped.wait(GRACE * 0.6)
    assert run.stopped.wait(5)
