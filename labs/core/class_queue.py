"""The class's queue: one named, detached Ray actor that every replica of a class server asks
(labs/core/cluster.py), so that a learner's place is the same whichever replica shows it and
the replicas together never start more runs than there are slots.

Its own module, light on imports (no torch): the actor's process starts in about a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

import ray

from labs.core.slots import Slots
from labs.core.usage import Usage

log = logging.getLogger("dllab.cluster")

NAMESPACE = "dllab"
QUEUE_NAME = "dllab-class"
REPLICA_SILENT_SECONDS = 15.0  # a replica unheard for this long has gone: its places are freed
# after Ray restarts the queue, no waiting run is granted a slot for this long: every replica
# first tells it which runs train (they see the restart within a refresh, STATUS_SECONDS)
SETTLE_SECONDS = 5.0


@dataclass(eq=False)
class _Ticket:
    """A run's place in the class queue (a Slots ticket: compared by identity)."""

    id: str
    kind: str
    learner: str
    replica: str
    granted: asyncio.Event = field(default_factory=asyncio.Event)
    left: bool = False


@ray.remote(num_cpus=0, max_restarts=-1)
class ClassQueue:
    """The fair slots of the whole class (labs/core/slots.py, one per device kind), each
    learner's used training time (the quota), the Stop board of every run, and who is still
    there: a replica that has not asked for its runs' places for REPLICA_SILENT_SECONDS has
    gone (killed, crashed), and its places are freed. An async actor: thousands of small calls
    a second, none of them waits on another.

    Ray starts it again if its process dies, empty: its `epoch` changes, and each replica then
    tells it the runs it holds (`rejoin`), so the runs training keep their slots and the runs
    waiting queue again. Used time kept in it is lost then (learners get theirs back early)."""

    def __init__(
        self, cpu_runs: int, gpu_runs: int, per_learner: int, silent_s: float = REPLICA_SILENT_SECONDS
    ):
        self.slots = {"cpu": Slots(cpu_runs, per_learner), "cuda": Slots(gpu_runs, per_learner)}
        self.silent_s = silent_s
        self.tickets: dict[str, _Ticket] = {}
        self.heard: dict[str, float] = {}  # replica -> when it last asked
        self.stops: dict[str, bool] = {}  # run id -> Stop asked
        self.beats: dict[str, tuple[float, int, int]] = {}  # run id -> (when, step, total)
        self.mailboxes: dict[str, list[bytes]] = {}  # batch id -> commands not yet collected
        self.usage = Usage()
        self.epoch = uuid.uuid4().hex  # a new one each time Ray starts the queue
        restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self.settled_at = time.monotonic() + (SETTLE_SECONDS if restarted else 0.0)
        self._sweeper = None

    async def sizes(self) -> dict:
        return {k: {"limit": s.limit, "per_learner": s.per_learner} for k, s in self.slots.items()}

    async def enter(
        self, ticket_id: str, learner: str, kind: str, replica: str
    ) -> tuple[bool, int | None, bool]:
        """Queue a run: (its turn has come, its position, held back by its learner's cap)."""
        self._keep_sweeping()
        await self._settled()
        self.heard[replica] = time.monotonic()
        ticket = self.tickets[ticket_id] = _Ticket(ticket_id, kind, learner, replica)
        slots = self.slots[kind]
        slots.enter(ticket, learner, ticket.granted.set)
        return ticket.granted.is_set(), slots.position(ticket), slots.held_back(ticket)

    async def turn(self, ticket_id: str) -> bool:
        """Wait until the run's turn comes: True; False if it left the queue first."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return False
        await ticket.granted.wait()
        return not ticket.left

    async def leave(self, ticket_id: str) -> bool:
        """Take a waiting run out of the queue; False if it was not waiting (it began)."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None or not self.slots[ticket.kind].leave(ticket):
            return False
        del self.tickets[ticket_id]
        ticket.left = True
        ticket.granted.set()  # its `turn` answers False
        return True

    async def release(self, ticket_id: str) -> None:
        """A run that began has ended: its slot goes to the next in fair order, class-wide."""
        ticket = self.tickets.pop(ticket_id, None)
        if ticket is not None:
            self.slots[ticket.kind].release(ticket)

    # -- batches: runs of one shape riding in one slot (labs/core/batches.py) -----------------
    async def free(self, kind: str) -> bool:
        """Whether a run arriving now would start at once (a slot free, nobody waiting)."""
        await self._settled()
        return self.slots[kind].free()

    async def ride(self, ticket_id: str, learner: str, kind: str, replica: str) -> bool:
        """Count a run as its learner's, riding in a batch that holds a slot already; False
        if the learner trains as many runs as they may (class-wide)."""
        self.heard[replica] = time.monotonic()
        ticket = _Ticket(ticket_id, kind, learner, replica)
        if not self.slots[kind].ride(ticket, learner):
            return False
        ticket.granted.set()
        self.tickets[ticket_id] = ticket
        return True

    async def ride_waiting(self, kind: str, ticket_ids: list[str], most: int) -> list[str]:
        """Up to `most` of these waiting runs, in fair order, taken out of the queue to ride
        in a batch with room; their `turn` answers False (they begin by riding, not by it)."""
        wanted = set(ticket_ids)
        chosen = self.slots[kind].ride_waiting(lambda t: t.id in wanted, most)
        for ticket in chosen:
            ticket.left = True
            ticket.granted.set()
        return [t.id for t in chosen]

    async def hand_over(self, ticket_id: str, batch_id: str) -> None:
        """The slot of a run that began now belongs to its batch; the run rides in it."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            return
        batch = self.tickets[batch_id] = _Ticket(batch_id, ticket.kind, "", ticket.replica)
        batch.granted.set()
        self.slots[ticket.kind].hand_over(ticket, batch)

    async def post(self, mailbox: str, blob: bytes) -> None:
        """A command for a batch on Ray (pickled by the server, read by the batch's task)."""
        self.mailboxes.setdefault(mailbox, []).append(blob)

    async def collect(self, mailbox: str) -> list[bytes]:
        """The batch's commands since it last asked, in the order they were posted."""
        return self.mailboxes.pop(mailbox, [])

    async def places(self, replica: str, ticket_ids: list[str]) -> dict:
        """What a replica shows its learners: each of its waiting runs' position and whether it
        waits for its learner's own run, and how many runs train, per kind, class-wide."""
        self.heard[replica] = time.monotonic()
        out = {}
        for ticket_id in ticket_ids:
            ticket = self.tickets.get(ticket_id)
            if ticket is not None:
                slots = self.slots[ticket.kind]
                out[ticket_id] = (slots.position(ticket), slots.held_back(ticket))
        busy = {k: (s.active, s.waiting) for k, s in self.slots.items()}
        return {"places": out, "busy": busy, "epoch": self.epoch}

    async def rejoin(self, replica: str, training: list[tuple], waiting: list[tuple]) -> dict:
        """A replica's runs, told again to a queue that restarted: each (ticket id, learner,
        kind) training holds its slot; each waiting queues again, in the order given. Returns
        `enter`'s answer for each waiting run it did not know."""
        self._keep_sweeping()
        self.heard[replica] = time.monotonic()  # training runs hold their slots at once
        for ticket_id, learner, kind in training:
            if ticket_id not in self.tickets:
                ticket = self.tickets[ticket_id] = _Ticket(ticket_id, kind, learner, replica)
                ticket.granted.set()
                self.slots[kind].occupy(ticket, learner)
        answers = {}
        for ticket_id, learner, kind in waiting:
            if ticket_id not in self.tickets:
                answers[ticket_id] = await self.enter(ticket_id, learner, kind, replica)
        return answers

    async def _settled(self) -> None:
        """Wait out the settling time after a restart: a slot granted before a replica has
        told of its training runs would put one run too many on the cluster."""
        wait = self.settled_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    # -- each learner, whichever replica they use ----------------------------------------------
    async def used(self, learner: str, half_life_s: float) -> float:
        return self.usage.used(learner, half_life_s)

    async def add_used(self, learner: str, seconds: float, half_life_s: float) -> None:
        self.usage.add(learner, seconds, half_life_s)

    async def runs_elsewhere(self, learner: str, replica: str) -> int:
        """How many runs `learner` has training or waiting on replicas other than `replica`."""
        return sum(t.learner == learner and t.replica != replica for t in self.tickets.values())

    # -- Stop, for runs on Ray -----------------------------------------------------------------
    async def stop(self, run_id: str) -> None:
        self.stops[run_id] = True

    async def beat(self, run_id: str, step: int, total: int) -> bool:
        """A running task's beat: whether its run must stop."""
        self.beats[run_id] = (time.monotonic(), step, total)
        return self.stops.get(run_id, False)

    async def forget(self, run_id: str) -> None:
        self.stops.pop(run_id, None)
        self.beats.pop(run_id, None)
        self.mailboxes.pop(run_id, None)

    # -- replicas that went away ---------------------------------------------------------------
    def _keep_sweeping(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            gone = {r for r, at in self.heard.items() if now - at > self.silent_s}
            for ticket in [t for t in self.tickets.values() if t.replica in gone]:
                log.warning(
                    "replica %s is gone: its run %s leaves the class queue", ticket.replica, ticket.id
                )
                if not await self.leave(ticket.id):
                    await self.release(ticket.id)
            for replica in gone:
                del self.heard[replica]
