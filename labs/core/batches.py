"""Batched runs, the server's side: when a class presses Train together, runs whose configs have
one shape train as one batch, in one worker and one run slot (issue 28; the stack itself is
the chapter's, the loop that drives it labs/core/stackdrive.py).

A run whose experiment can stack (its `batch_key`, labs/core/contract.py) takes a free slot if
there is one: it opens a batch of one there, handing its slot to the batch, so the batches
spread over the slots (the cores) and a lone learner's run starts as it would alone, with no
waiting window. When no slot is free it joins the smallest open batch of its key with room
(`DLLAB_BATCH_MAX` members) at that batch's next step, taking no slot, as long as its learner
may train another run. Otherwise it queues like any run, and opens a batch in its turn. Others
join it while it trains, and runs of its key that were queued already leave the queue to join
it as soon as it opens or has room again (`Batches.fill`). Each member is still its own
`TrainingRun`: its messages reach it alone, Stop ends only it, and its budget is its own (its
time counts its share of the batch). The batch gives its slot back when its last member has
ended.

On Ray (labs/core/cluster.py) a batch is one Ray task, its slot one of the class queue's: the
batches are this server process's, so runs join batches their own replica opened.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Hashable

from labs.core.budget import size
from labs.core.control import Ending
from labs.core.driver import IN_THREAD, Job
from labs.core.failures import CutShort, RemoteFailure, WorkerLost
from labs.core.stackdrive import Member, StackJob, drive_stack, taking_from
from labs.core.workers import HARD_MEMORY_FACTOR, POLL_SECONDS, STOP_GRACE_SECONDS, WorkerPool

log = logging.getLogger("dllab.batches")


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


BATCH_MAX = _env_int("DLLAB_BATCH_MAX", 32)  # members in one batch; 1: every run trains alone


class MemberJob:
    """One member of a batch, as its TrainingRun drives it (the interface of a worker's job,
    labs/core/workers.py RemoteJob): its messages, its step count, its Stop."""

    def __init__(self, batch: Batch, job: Job):
        self.batch, self.id, self.limits = batch, next(_IDS), job.limits
        self.member = Member(self.id, job.cfg, job.limits, job.views)
        self.ending: Ending | None = None
        self.peak_bytes = 0
        self.share_seconds = 0.0  # its share of the batch's time: what its budget counts
        self.joined = time.monotonic()
        self.stop_asked: float | None = None
        self._progress = (0, 0)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()

    @property
    def process_id(self) -> int | None:
        return self.batch.host.process_id

    def request_stop(self) -> None:
        if self.stop_asked is None:
            self.stop_asked = time.monotonic()
            self.batch.tell(("stop", self.id))

    def progress(self) -> tuple[int, int]:
        return self._progress

    def deliver(self, kind: str, payload) -> None:
        """From the batch's reader thread: a message of this member's."""
        if kind == "progress":
            self._progress = payload
        else:
            self._inbox.put((kind, payload))

    def run(self, receive) -> None:
        """Hand each of this member's messages to `receive` until it ends."""
        while True:
            kind, payload = self._inbox.get()
            if kind in ("snap", "points", "frame"):
                receive(kind, payload)
            elif kind == "end":
                self.ending = payload
                return
            elif kind == "cut":
                raise CutShort(*payload)
            elif kind == "lost":
                raise WorkerLost(payload)
            else:  # "error": already in the learner's words
                raise RemoteFailure(payload)


_IDS = itertools.count(1)


class Batch:
    """One stack training in one host (a worker process, or a thread in tests), holding one
    run slot; a reader thread hands each member its messages and watches over the host."""

    def __init__(self, board: Batches, key: Hashable, host, stack: Callable, job: Job, slots, ticket):
        self.board, self.key, self.host = board, key, host
        self.slots = slots  # the slots it holds one of; its queued runs of its key may ride
        self.members: dict[int, MemberJob] = {}
        self.open = True  # joinable; False once its last member ended (or it was cut)
        self._accounted = time.monotonic()
        first = MemberJob(self, job)
        self.members[first.id] = first
        self.first = first
        slots.hand_over(ticket, self)  # the batch holds the run's slot from now on
        self._base = host.resident()
        host.begin(StackJob(stack, job.device, first.member, job.clock))
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"batch-{first.id}")
        self._reader.start()

    def add(self, job: Job) -> MemberJob:
        """Under the board's lock: a member joins at the stack's next step."""
        member = MemberJob(self, job)
        self._account()
        self.members[member.id] = member
        self.host.tell(("join", member.member))
        return member

    def tell(self, command: tuple) -> None:
        try:
            self.host.tell(command)
        except (OSError, ValueError):  # the host has gone: its reader tells the members
            pass

    def _account(self) -> None:
        """Share the time since the last change of members between them (a member costs its
        share of the batch, not the batch's whole time)."""
        now = time.monotonic()
        if self.members:
            share = (now - self._accounted) / len(self.members)
            for member in self.members.values():
                member.share_seconds += share
        self._accounted = now

    # -- the reader thread ---------------------------------------------------------------------
    def _read(self) -> None:
        watched = time.monotonic()
        try:
            while True:
                if time.monotonic() - watched >= POLL_SECONDS:
                    watched = time.monotonic()
                    self._watch()
                try:
                    kind, payload = self.host.next(POLL_SECONDS)
                except queue.Empty:
                    continue
                if kind == "member":
                    if self._deliver(*payload):
                        return  # the last member ended: the batch closed
                else:  # the host's driver ended or failed: nothing more will come
                    self._end_all("error", payload if kind == "error" else "The batch ended.")
                    return
        except CutShort as cut:
            log.warning("batch %s cut by the server (%s)", self.first.id, cut.detail)
            self._end_all("cut", (cut.ending, cut.detail))
        except WorkerLost as lost:
            log.warning("batch %s: worker lost (exit code %s)", self.first.id, lost)
            self._end_all("lost", str(lost))
        except Exception:
            log.exception("batch %s: reader failed", self.first.id)
            self._end_all("lost", "reader")
        finally:
            self.host.finish()
            self.slots.release(self)

    def _deliver(self, member_id: int, kind: str, payload) -> bool:
        """Hand a member its message; True once the batch has closed (its last member ended)."""
        member = self.members.get(member_id)
        if member is None:
            return False
        if kind not in ("end", "error"):
            member.deliver(kind, payload)
            return False
        with self.board.lock:
            self._account()
            del self.members[member_id]
            closing = not self.members
            if closing:
                self.open = False
                self.board.closed(self)
        member.deliver(kind, payload)
        if closing:
            self.host.tell(("close",))
            self.host.wait_closed()
        else:
            self.board.fill(self)  # a place came free: a queued run of this key may take it
        return closing

    def _watch(self) -> None:
        """Cut the batch (its host killed) if a member will not end in time, or the host grows
        past what its members may hold between them."""
        now = time.monotonic()
        with self.board.lock:
            members = list(self.members.values())
        for m in members:
            if m.stop_asked is not None and now - m.stop_asked > STOP_GRACE_SECONDS:
                self._cut(Ending.STOP, f"no answer {STOP_GRACE_SECONDS:g} s after Stop")
            if now - m.joined > m.limits.seconds + STOP_GRACE_SECONDS:
                self._cut(Ending.TIME, f"past {m.limits.seconds:g} s")
        used = self.host.resident() - self._base
        allowed = HARD_MEMORY_FACTOR * sum(m.limits.memory_bytes for m in members)
        if members and used > allowed:
            self._cut(Ending.MEMORY, f"{size(used)} resident, budget {size(allowed)}")

    def _cut(self, ending: Ending, detail: str):
        self.host.kill()
        raise CutShort(ending, detail)

    def _end_all(self, kind: str, payload) -> None:
        with self.board.lock:
            self._account()
            members, self.members = list(self.members.values()), {}
            self.open = False
            self.board.closed(self)
        for member in members:
            member.deliver(kind, payload)


class Batches:
    """Every open batch of this server process, by key."""

    def __init__(self, max_members: int = BATCH_MAX):
        self.max_members = max_members
        self.lock = threading.Lock()
        self._open: dict[Hashable, list[Batch]] = {}

    def batches(self, executor) -> bool:
        """Whether runs of `executor` can train in batches (worker processes, a thread, or
        an executor that hosts batches itself: Ray's, one task per batch)."""
        hosts = executor is IN_THREAD or isinstance(executor, WorkerPool) or hasattr(executor, "batch_host")
        return self.max_members > 1 and hosts

    def join(self, key: Hashable, job: Job) -> MemberJob | None:
        """Join an open batch of `key` with room, at its next step; None if there is none."""
        with self.lock:
            room = [b for b in self._open.get(key, ()) if b.open and len(b.members) < self.max_members]
            if not room:
                return None
            return min(room, key=lambda b: len(b.members)).add(job)  # the batches stay even

    def begin(self, key: Hashable, stack: Callable, job: Job, executor, slots, ticket) -> MemberJob:
        """Open a batch of `key` with `job` as its first member, in the slot `ticket` holds."""
        host = _host(executor, job.device.type)
        with self.lock:
            batch = Batch(self, key, host, stack, job, slots, ticket)
            self._open.setdefault(key, []).append(batch)
        self.fill(batch)  # runs of this key queued before it opened ride in it at once
        return batch.first

    def fill(self, batch: Batch) -> None:
        """Queued runs of the batch's key (a waiting TrainingRun's `batch_key`) whose learners
        may train another run leave the queue to join it, as many as it has room for."""
        with self.lock:
            room = self.max_members - len(batch.members)
            if not batch.open or room <= 0:
                return
            for run in batch.slots.ride_waiting(lambda t: getattr(t, "batch_key", None) == batch.key, room):
                run.ride_in(batch)

    def fill_open(self) -> None:
        """After a run ended: its learner's queued runs may now ride in a batch with room."""
        with self.lock:
            open_batches = [b for group in self._open.values() for b in group]
        for batch in open_batches:
            self.fill(batch)

    def closed(self, batch: Batch) -> None:
        """Under the lock: `batch` takes no more members."""
        kept = [b for b in self._open.get(batch.key, ()) if b is not batch]
        if kept:
            self._open[batch.key] = kept
        else:
            self._open.pop(batch.key, None)

    def open_members(self) -> int:
        with self.lock:
            return sum(len(b.members) for batches in self._open.values() for b in batches)


def _host(executor, kind: str):
    if executor is IN_THREAD:
        return _ThreadHost()
    if isinstance(executor, WorkerPool):
        return _WorkerHost(executor, kind)
    return executor.batch_host(kind)  # labs/core/cluster.py RayBatchHost


class _WorkerHost:
    """A batch in a worker process borrowed from the pool."""

    def __init__(self, pool: WorkerPool, kind: str):
        self.pool, self.worker = pool, pool.borrow(kind)
        self.number = 0
        self.gpu_left = 0
        self._ended = False

    @property
    def process_id(self) -> int:
        return self.worker.proc.pid

    def begin(self, job: StackJob) -> None:
        self.number = self.worker.send(job)

    def tell(self, command: tuple) -> None:
        self.worker.jobs.put((self.number, command))

    def next(self, timeout: float):
        while True:
            number, kind, payload = self.worker.get(timeout)
            if number != self.number:
                continue
            if kind == "end":
                self._ended = True
                self.gpu_left = payload[2]
            return kind, payload

    def wait_closed(self) -> None:
        """After "close": the worker's own end of the batch, so that it is free again."""
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        try:
            while not self._ended and time.monotonic() < deadline:
                kind, _ = self.next(max(0.01, deadline - time.monotonic()))
                self._ended = self._ended or kind == "error"
        except (queue.Empty, WorkerLost):
            pass

    def resident(self) -> int:
        return self.worker.resident()

    def kill(self) -> None:
        self.worker.kill()

    def finish(self) -> None:
        if not self._ended and self.worker.alive:
            self.worker.kill()  # it did not end its batch cleanly: it is not lent again
        self.pool.give_back(self.worker, self.gpu_left)


class _ThreadHost:
    """A batch driven on a thread of this process (DLLAB_EXECUTOR=thread: tests, AppTest)."""

    process_id = os.getpid()

    def __init__(self):
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._messages: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def begin(self, job: StackJob) -> None:
        self._thread = threading.Thread(target=self._drive, args=(job,), daemon=True, name="batch-thread")
        self._thread.start()

    def _drive(self, job: StackJob) -> None:
        try:
            drive_stack(job, taking_from(self._commands), self._emit)
            self._messages.put(("end", None))
        except Exception as err:
            log.exception("batch failed")
            self._messages.put(("error", str(err)))

    def _emit(self, kind: str, payload) -> None:
        self._messages.put((kind, payload))

    def tell(self, command: tuple) -> None:
        self._commands.put(command)

    def next(self, timeout: float):
        return self._messages.get(timeout=timeout)

    def wait_closed(self) -> None:
        if self._thread is not None:
            self._thread.join(STOP_GRACE_SECONDS)

    def resident(self) -> int:
        return 0

    def kill(self) -> None:
        pass  # a thread cannot be killed: a thread run is not held to its memory

    def finish(self) -> None:
        pass


BATCHES = Batches()  # this server process's open batches
