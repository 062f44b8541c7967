"""What a page works out in the web server itself once a run has ended, for a learner who clicked:
Captum on a typed review, attacks at another ε, the canvas served by every variant and timed.

It runs on the server's own cores, beside every other learner's page and the run slots, so it is
bounded: at most DLLAB_ANALYSIS_AT_ONCE at a time (default: as many as CPU runs). A learner
whose turn does not come within WAIT_SECONDS is told the server is busy, not left waiting.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from labs.core.runner import SLOTS

T = TypeVar("T")
WAIT_SECONDS = 30.0


class Busy(RuntimeError):
    """Every analysis turn is taken; the message says so to the learner."""


def _at_once() -> int:
    try:
        return max(1, int(os.environ.get("DLLAB_ANALYSIS_AT_ONCE", "0")) or SLOTS["cpu"].limit)
    except ValueError:
        return SLOTS["cpu"].limit


class Gate:
    def __init__(self, at_once: int):
        self.at_once = at_once
        self._turns = threading.BoundedSemaphore(at_once)

    def run(self, compute: Callable[[], T], wait: float = WAIT_SECONDS) -> T:
        """compute() in its turn; Busy if none came within `wait` seconds."""
        if not self._turns.acquire(timeout=wait):
            raise Busy(
                "The server is busy working out other learners' results right now: try again in a "
                "moment (what you trained is kept)."
            )
        try:
            return compute()
        finally:
            self._turns.release()


GATE = Gate(_at_once())
