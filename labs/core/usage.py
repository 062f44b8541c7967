"""The training time each learner has used, which comes back with a half-life: the book the
quota reads (server/learners.py). One per server process with the local backend; on Ray one for
the whole class, kept in its queue (labs/core/class_queue.py), so a learner's time is the same
on every replica. Light on imports: the class queue's actor loads it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def decayed(used: float, age_s: float, half_life_s: float) -> float:
    """What is left of `used` seconds after `age_s`: half of it every `half_life_s`."""
    return used * 0.5 ** (max(0.0, age_s) / half_life_s)


class Usage:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._used: dict[str, tuple[float, float]] = {}  # learner -> (seconds used, as of when)

    def used(self, learner: str, half_life_s: float) -> float:
        with self._lock:
            return self._now(learner, half_life_s)

    def add(self, learner: str, seconds: float, half_life_s: float) -> None:
        with self._lock:
            self._used[learner] = (self._now(learner, half_life_s) + seconds, self.clock())

    def elsewhere(self, learner: str) -> int:
        """The learner's runs held by other server processes: none, for a process of its own."""
        return 0

    def _now(self, learner: str, half_life_s: float) -> float:
        used, at = self._used.get(learner, (0.0, self.clock()))
        return decayed(used, self.clock() - at, half_life_s)
