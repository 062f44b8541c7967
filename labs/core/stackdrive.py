"""Driving a batch: many learners' runs of one shape trained as one stack, wherever the batch
runs (a worker process, or the runner's thread in tests). The server's side of a batch, its
members joining and leaving, is labs/core/batches.py.

The stack is the chapter's (its Experiment's `stack`, labs/core/contract.py): members join it
at the next step and leave it when their run ends. Each member gets what a run driven alone
gets (labs/core/driver.py): its own Control (Stop, its time budget, its curve points), its own
snapshots and live frames, at its own pace, as messages tagged with its id:

    ("member", (member id, kind, payload))   kind: points, snap, frame as for a run alone;
                                             "progress" (steps done, in all), ~30 times a second;
                                             "end" (its ending, or None) or "error" (in words)

The batch hears the server through `commands`: ("join", Member), ("stop", member id) and
("close",), the last once the server has seen every member end. An empty stack waits for the
next of them, so a run the server joined to this batch is never lost to a batch that ended.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from labs.core.budget import Limits
from labs.core.control import Control, current
from labs.core.driver import Emit, Outlet
from labs.core.failures import EXPECTED, Diverged, explain_failure

log = logging.getLogger("dllab.batches")
COMMAND_SECONDS = 0.005  # a training stack looks for joins and Stops this often, not every step
# Members' step counts go home at least this often (a run alone's is shared memory, read at will;
# its points carry it too, but a point is made every few steps): the progress line moves at a
# browser's pace. A batch of more than 4 sends them proportionally less often, so its messages
# to the server stay ~120 a second however many learners it holds.
PROGRESS_SECONDS = 1 / 30


@dataclass(frozen=True)
class Member:
    """One learner's run in a batch, as the stack's driver needs it (picklable)."""

    id: int
    cfg: object
    limits: Limits
    views: Callable | None = None


@dataclass(frozen=True)
class StackJob:
    """A batch as its driver needs it: where its stack is made, and its first member."""

    stack: Callable[[torch.device], object]
    device: torch.device
    first: Member
    clock: Callable[[], float] = time.monotonic


Commands = Callable[[bool], list]  # commands(wait): the server's commands since the last call


def taking_from(inbox: queue.SimpleQueue) -> Commands:
    """`commands` for a batch whose server's commands arrive in `inbox`: all that came, or,
    with `wait`, at least one (an empty stack waits for a join or the close)."""

    def take(wait: bool) -> list:
        got = []
        while True:
            try:
                got.append(inbox.get(block=wait and not got))
            except queue.Empty:
                return got

    return take


def drive_stack(job: StackJob, commands: Commands, emit: Emit) -> None:
    """Train the batch's members as one stack until the server closes the batch."""
    batch = _Driven(job, emit)
    batch.join(job.first)
    looked = -float("inf")
    while True:
        now = time.perf_counter()
        if not batch.stack.members or now - looked > COMMAND_SECONDS:
            looked = now
            for command in commands(not batch.stack.members):
                if command[0] == "close":
                    return
                batch.obey(command)
        if batch.stack.members and batch.paced():
            batch.step()


class _Driven:
    """The stack and, by member id, each member's Control and Outlet."""

    def __init__(self, job: StackJob, emit: Emit):
        self.job, self.emit = job, emit
        self.stack = job.stack(job.device)
        self.members: dict[int, tuple[Control, Outlet]] = {}
        self.next_step_at = -float("inf")  # a watchable stack's next step, on the batch's clock
        self.progress_at = -float("inf")  # when the members' step counts go home next

    def paced(self) -> bool:
        """Whether the next step is due: at once at full speed; at a watchable pace, after a
        short wait (at most COMMAND_SECONDS, so joins and Stops are still heard), or not yet."""
        rate = self.stack.per_second()
        if not rate:
            return True
        now = self.job.clock()
        if now < self.next_step_at:
            time.sleep(min(self.next_step_at - now, COMMAND_SECONDS))
            # a wait on purpose: the members' snapshots (their Cadence, on this thread) may use it
            current().slept += self.job.clock() - now
            return False
        # on time: the next step one period after this one's due time, so that a sleep's
        # overshoot does not add up; behind (the first step, a snapshot, a join): one period
        # from now, so a late step is never followed by a burst of catching up
        self.next_step_at = max(self.next_step_at, now - 0.25 / rate) + 1 / rate
        return True

    def obey(self, command: tuple) -> None:
        if command[0] == "join":
            self.join(command[1])
        elif command[0] == "stop" and command[1] in self.members:
            self.members[command[1]][0].stop.set()

    def join(self, member: Member) -> None:
        tell = self._teller(member.id)
        control = Control(seconds=member.limits.seconds, clock=self.job.clock)
        outlet = Outlet(member.views, member.cfg, self.job.clock, tell)
        if outlet.frames is not None:  # the members' frames share the batch's drawing time
            outlet.frames.sharing = lambda: max(1, len(self.members))

        def sink(points: list[dict]) -> None:  # the member's step count goes home with its points
            tell("progress", tuple(control.progress))
            outlet.points(points)

        control.sink = sink
        try:
            self.stack.add(member.id, member.cfg, control)
        except Exception as err:  # this member's settings: it alone fails, in words
            self._failed(member.id, err)
            return
        self.members[member.id] = (control, outlet)

    def step(self) -> None:
        """One step of every member; hand on what each made."""
        try:
            made = self.stack.step()
        except Exception as err:  # the whole stack is broken: every member fails; a new one waits
            for member_id in list(self.members):
                self._failed(member_id, err)
            self.members.clear()
            self.stack = self.job.stack(self.job.device)
            return
        for member_id, out in made:
            control, outlet = self.members[member_id]
            if isinstance(out, BaseException):
                del self.members[member_id]
                self._failed(member_id, out)
                continue
            outlet.snap(out)
            if out.final:
                del self.members[member_id]
                self._teller(member_id)("progress", tuple(control.progress))
                self._teller(member_id)("end", control.ending)
        self._tell_progress()

    def _tell_progress(self) -> None:
        now = self.job.clock()
        if now < self.progress_at or not self.members:
            return
        self.progress_at = now + PROGRESS_SECONDS * max(1.0, len(self.members) / 4)
        for member_id, (control, _) in self.members.items():
            self._teller(member_id)("progress", tuple(control.progress))

    def _failed(self, member_id: int, err: BaseException) -> None:
        if isinstance(err, (*EXPECTED, Diverged)):  # a learner's setting, not a bug
            log.info("batched run ended in %s: %s", os.getpid(), err)
        else:
            log.warning("batched run failed in %s: %r", os.getpid(), err, exc_info=err)
        self._teller(member_id)("error", explain_failure(err))

    def _teller(self, member_id: int) -> Emit:
        return lambda kind, payload: self.emit("member", (member_id, kind, payload))
