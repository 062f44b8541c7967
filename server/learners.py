"""Who a learner is, and what one learner may hold of a shared server.

A learner is the logged-in user when the operator configures Streamlit's login (`st.login`),
else the browser: the token inside Streamlit's XSRF cookie is the same in all of a browser's
tabs (without XSRF, each tab is its own learner). Per learner:

- at most DLLAB_RUNS_PER_LEARNER runs training (the slots hold to it, labs/core/slots.py) and
  DLLAB_WAITING_PER_LEARNER more waiting; a run past that is refused, naming the runs to stop;
- optionally DLLAB_QUOTA_MINUTES of training time, which recovers with a half-life
  (DLLAB_QUOTA_HALF_LIFE_MINUTES), as shared GPU services do: a learner whose time is spent is
  told when enough has come back.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chapters import by_slug, page_of, part_of
from labs.core.budget import duration
from labs.core.runner import ENDED, PER_LEARNER, RunState, on_ray
from labs.core.usage import Usage


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Rules:
    training: int = PER_LEARNER  # runs one learner trains at once
    waiting: int = int(_env_float("DLLAB_WAITING_PER_LEARNER", 1))  # more of theirs that may wait
    quota_s: float = 60 * _env_float("DLLAB_QUOTA_MINUTES", 0)  # 0: no quota
    half_life_s: float = 60 * _env_float("DLLAB_QUOTA_HALF_LIFE_MINUTES", 60)


def run_name(key: str) -> str:
    """How a run is named to its learner: the chapter, and the experiment on a page of several."""
    try:
        label = by_slug(page_of(key)).label
    except StopIteration:
        label = key
    part = part_of(key)
    return f"{label} ({part})" if part else label


class Ledger:
    """Every learner's live runs in this server process, and their used training time: in a
    book of this process's own, or on Ray the class's (labs/core/replica.py ClassUsage), which
    also counts the learner's runs on other replicas."""

    def __init__(self, rules: Rules | None = None, clock: Callable[[], float] = time.monotonic, book=None):
        self.rules, self.clock = rules or Rules(), clock
        self.book = book or Usage(clock)
        self._lock = threading.Lock()
        self._runs: dict[str, dict[str, tuple[str, object]]] = {}  # learner -> run id -> (key, run)

    # -- limits -------------------------------------------------------------------------------
    def refusal(self, learner: str, replacing: tuple = ()) -> str:
        """Why `learner` may not start another run now ("" if they may). The runs in
        `replacing` do not count: the new run stops them (the tab's run on the same page)."""
        quota = self.quota_refusal(learner)
        if quota:
            return quota
        others = [(k, r) for k, r in self.alive(learner) if r not in replacing]
        allowed = self.rules.training + self.rules.waiting
        if len(others) < allowed:
            elsewhere = self.book.elsewhere(learner)  # asked only near the cap: one call
            if len(others) + elsewhere < allowed:
                return ""
        else:
            elsewhere = 0
        listed = "; ".join(f"{run_name(k)}: {r.status()['state']}" for k, r in others)
        if elsewhere:
            listed = "; ".join(filter(None, [listed, f"{elsewhere} in another browser"]))
        going = len(others) + elsewhere
        return (
            f"You already have {going} runs going ({listed}). On this server one learner trains "
            f"{self.rules.training} at a time and queues {self.rules.waiting} more: stop one of them "
            "(its page's Stop button) to start this one."
        )

    def alive(self, learner: str) -> list[tuple[str, object]]:
        """(run key, run) of each of the learner's runs that is training or waiting."""
        with self._lock:
            runs = list(self._runs.get(learner, {}).values())
        return [(k, r) for k, r in runs if RunState(r.status()["state"]).alive]

    def track(self, learner: str, key: str, run) -> None:
        """Count `run` as `learner`'s until it ends; then add the time it trained to their usage."""
        with self._lock:
            self._runs.setdefault(learner, {})[id(run)] = (key, run)
        recorded = []

        def on_change(changed) -> None:
            if recorded or changed.status()["state"] not in ENDED:
                return
            recorded.append(True)
            self._ended(learner, key, changed)

        run.listeners.append(on_change)
        on_change(run)

    def _ended(self, learner: str, key: str, run) -> None:
        with self._lock:
            self._runs.get(learner, {}).pop(id(run), None)
        self.book.add(learner, run.running_seconds, self.rules.half_life_s)

    # -- quota --------------------------------------------------------------------------------
    def used(self, learner: str) -> float:
        return self.book.used(learner, self.rules.half_life_s)

    def recovers_in(self, learner: str) -> float:
        """Seconds until the learner's used time decays below the quota (0 if it is already)."""
        quota = self.rules.quota_s
        if not quota:
            return 0.0
        used = self.used(learner)
        if used < quota:
            return 0.0
        return self.rules.half_life_s * math.log2(used / quota) + 1.0

    def quota_refusal(self, learner: str) -> str:
        wait = self.recovers_in(learner)
        if not wait:
            return ""
        return (
            f"Your training time for now is spent: {duration(self.used(learner))} of "
            f"{duration(self.rules.quota_s)}. It comes back by half every "
            f"{duration(self.rules.half_life_s)}; you can train again in about {duration(wait)}."
        )

    def quota_line(self, learner: str) -> str:
        """What the page says before Train ("" without a quota)."""
        if not self.rules.quota_s:
            return ""
        return (
            f"Your training time: {duration(self.used(learner))} used of {duration(self.rules.quota_s)} "
            f"(it comes back by half every {duration(self.rules.half_life_s)})."
        )


def _book():
    """On Ray, the class's book of used time (kept in its queue); else this process's."""
    if on_ray():
        from labs.core.replica import ClassUsage

        return ClassUsage()
    return None


LEDGER = Ledger(book=_book())


def learner_id() -> str:
    """This page's learner: the logged-in user, else the browser (its XSRF cookie), else the tab.
    Hashed: an id may appear in logs, a cookie's secret may not."""
    import streamlit as st

    from server.channel import owner_of
    from server.routes import XSRF_COOKIE

    user = _logged_in_user(st)
    if user:
        return "user:" + _short_hash(user)
    browser = owner_of(st.context.cookies.get(XSRF_COOKIE))
    if browser:
        return "browser:" + _short_hash(browser)
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return "tab:" + (ctx.session_id if ctx else "unknown")


def _logged_in_user(st) -> str:
    """The logged-in user's email (or subject); "" when nobody is, or login is not configured
    (then st.user has no `is_logged_in` at all)."""
    if not getattr(st.user, "is_logged_in", False):
        return ""
    return str(st.user.get("email") or st.user.get("sub") or "")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
