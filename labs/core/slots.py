"""Run slots: at most `limit` runs at once on one kind of device, shared fairly between learners.

A learner is whoever the server says runs belong to (a browser, or a logged-in user:
server/learners.py). A learner trains at most `per_learner` runs at once; their other runs wait.
When a slot frees, it goes to the waiting run whose learner has the fewest runs training now;
among equals, round robin (the learner whose latest run began longest ago), then the earliest:
a newcomer's first run goes ahead of a browser's third tab, whatever order they came in, and a
queue position once shown is kept. Runs of no particular learner ("") are served first come, first served and
are not capped (tests, benchmarks).

Nothing waits in a thread: `enter` hands over a `begin` callback, called (outside the lock) when
the run's turn comes, which starts its work.

Runs trained together as one batch (labs/core/batches.py) hold one slot between them: the run
that opened the batch hands its slot to the batch (`hand_over`), and every member, that one
included, rides in it (`ride`): counted as its learner's run training, taking no slot. Runs
that queued before a batch of their kind opened, or while it was full, leave the queue to ride
in it as soon as it has room (`ride_waiting`).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class _Waiting:
    arrived: int
    ticket: object = field(compare=False)
    learner: str = field(compare=False)
    begin: Callable[[], None] = field(compare=False)


class Slots:
    def __init__(self, limit: int, per_learner: int = 1):
        self.limit = max(1, limit)
        self.per_learner = max(1, per_learner)
        self._lock = threading.Lock()
        self._waiting: list[_Waiting] = []
        self._training: dict[str, int] = {}  # runs training, by learner
        self._begun: dict[int, str] = {}  # id of each ticket training -> its learner
        self._riders: dict[int, str] = {}  # id of each run training in a batch -> its learner
        self._last_turn: dict[str, int] = {}  # learner -> when their latest run began (a count)
        self._turns = itertools.count()
        self._active = 0
        self._arrivals = itertools.count()

    def enter(self, ticket: object, learner: str, begin: Callable[[], None]) -> None:
        """Queue `ticket`; `begin()` is called once its turn comes (at once if a slot is free)."""
        with self._lock:
            self._waiting.append(_Waiting(next(self._arrivals), ticket, learner, begin))
            due = self._due()
        for start in due:
            start()

    def leave(self, ticket: object) -> bool:
        """Take a waiting ticket out of the queue; False if it was not waiting (it has begun)."""
        with self._lock:
            kept = [w for w in self._waiting if w.ticket is not ticket]
            left, self._waiting = len(kept) < len(self._waiting), kept
        return left

    def release(self, ticket: object) -> None:
        """A run that began has ended: its slot goes to the next waiting run in fair order (a
        rider frees no slot, but its learner may now start a run that waited for it)."""
        with self._lock:
            rider = self._riders.pop(id(ticket), None)
            learner = self._begun.pop(id(ticket), None) if rider is None else rider
            if learner is None:
                return  # it never began, or was released already
            if rider is None:
                self._active -= 1
            self._training[learner] -= 1
            due = self._due()
        for start in due:
            start()

    def ride(self, ticket: object, learner: str) -> bool:
        """Count `ticket` as its learner's run training inside a batch that holds a slot
        already; False (nothing counted) if the learner trains as many runs as they may."""
        with self._lock:
            if learner and self._training.get(learner, 0) >= self.per_learner:
                return False
            self._training[learner] = self._training.get(learner, 0) + 1
            self._riders[id(ticket)] = learner
            return True

    def ride_waiting(self, wanted: Callable[[object], bool], most: int) -> list:
        """Up to `most` waiting tickets that `wanted` picks, in fair order, their learners'
        caps kept, taken out of the queue and counted as riding (a batch of their kind has
        room): they start without a slot. Returns them; the caller starts each one."""
        chosen = []
        with self._lock:
            for w in self._fair_order():
                if len(chosen) >= most:
                    break
                if self._eligible(w) and wanted(w.ticket):
                    self._waiting.remove(w)
                    self._training[w.learner] = self._training.get(w.learner, 0) + 1
                    self._riders[id(w.ticket)] = w.learner
                    chosen.append(w.ticket)
        return chosen

    def hand_over(self, ticket: object, batch: object) -> None:
        """The slot `ticket` holds now belongs to `batch` (a batch of nobody in particular),
        and `ticket` rides in it: released, the run frees no slot; the batch's release does."""
        with self._lock:
            learner = self._begun.pop(id(ticket))
            self._riders[id(ticket)] = learner
            self._begun[id(batch)] = ""
            self._training[""] = self._training.get("", 0) + 1

    def free(self) -> bool:
        """Whether a run arriving now would start at once (a slot free, nobody waiting)."""
        with self._lock:
            return self._active < self.limit and not self._waiting

    def occupy(self, ticket: object, learner: str) -> None:
        """Count a run that trains already as holding a slot, past the limit if need be (a
        class queue that restarted learns of the runs the replicas kept training)."""
        with self._lock:
            if id(ticket) in self._begun:
                return
            self._active += 1
            self._training[learner] = self._training.get(learner, 0) + 1
            self._begun[id(ticket)] = learner

    def position(self, ticket: object) -> int | None:
        """1 for the next run to start; None when not waiting."""
        with self._lock:
            order = self._fair_order()
        return next((i + 1 for i, w in enumerate(order) if w.ticket is ticket), None)

    def held_back(self, ticket: object) -> bool:
        """Whether a waiting ticket waits for its learner's own run to end, not for a slot."""
        with self._lock:
            return any(w.ticket is ticket and not self._eligible(w) for w in self._waiting)

    def training_of(self, learner: str) -> int:
        with self._lock:
            return self._training.get(learner, 0)

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    # -- under the lock ----------------------------------------------------------------------
    def _eligible(self, w: _Waiting) -> bool:
        return not w.learner or self._training.get(w.learner, 0) < self.per_learner

    def _fair_order(self) -> list[_Waiting]:
        """Waiting runs in the order they would start: eligible ones first, by how many runs
        their learner trains now, then round robin (the learner whose run began longest ago,
        or never, first), then by arrival; capped learners' runs after them. So a learner's
        second run, shown behind another learner's first while their own trains, stays behind
        it when their own ends."""

        def rank(w: _Waiting):
            if not w.learner:  # runs of nobody in particular: first come, first served
                return (False, 0, -1, w.arrived)
            turns = (self._training.get(w.learner, 0), self._last_turn.get(w.learner, -1))
            return (not self._eligible(w), *turns, w.arrived)

        return sorted(self._waiting, key=rank)

    def _due(self) -> list[Callable[[], None]]:
        """Give free slots to the runs whose turn it is; their `begin`s, to call after unlocking."""
        starts = []
        while self._active < self.limit:
            nxt = next((w for w in self._fair_order() if self._eligible(w)), None)
            if nxt is None:
                break
            self._waiting.remove(nxt)
            self._active += 1
            self._training[nxt.learner] = self._training.get(nxt.learner, 0) + 1
            self._begun[id(nxt.ticket)] = nxt.learner
            self._last_turn[nxt.learner] = next(self._turns)
            starts.append(nxt.begin)
        return starts
