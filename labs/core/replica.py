"""A replica of a class server on Ray, as the class queue knows it (DLLAB_BACKEND=ray).

Joining the cluster (`connect`), the class queue's handle (`class_queue`), and `ClassSlots`:
the slots of one device kind as this replica sees them, the same calls as labs/core/slots.py,
answered by the one queue every replica shares (labs/core/class_queue.py). The runs themselves
go to the cluster through labs/core/cluster.py.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import ray

from labs.core.class_queue import NAMESPACE, QUEUE_NAME, REPLICA_SILENT_SECONDS, ClassQueue

log = logging.getLogger("dllab.cluster")

ROOT = Path(__file__).resolve().parents[2]
STATUS_SECONDS = 0.5  # how often a replica refreshes its runs' queue positions


def connect() -> None:
    """Join the Ray cluster at DLLAB_RAY_ADDRESS (default "auto": the one this machine is part
    of). Workers import the lab from this checkout (machines that join the cluster keep one at
    the same path: README, hosting)."""
    if ray.is_initialized():
        return
    ray.init(
        address=os.environ.get("DLLAB_RAY_ADDRESS", "auto"),
        namespace=NAMESPACE,
        log_to_driver=False,
        configure_logging=False,
        runtime_env=environment("cpu"),
    )
    log.info("connected to Ray at %s", ray.get_runtime_context().gcs_address)


def environment(kind: str) -> dict:
    """The runtime environment of a run's Ray worker. GPU runs get one of their own, so Ray
    keeps separate worker processes for them and a CPU run's worker never holds a CUDA context;
    DLLAB_* settings (budgets, threads) travel with it."""
    env = {k: v for k, v in os.environ.items() if k.startswith("DLLAB_")}
    env.update(PYTHONPATH=str(ROOT), DLLAB_WORKER_KIND=kind)
    return {"env_vars": env}


def class_queue(
    sizes: tuple[int, int, int], name: str = QUEUE_NAME, silent_s: float = REPLICA_SILENT_SECONDS
):
    """The class's queue: the running one, or a new one with these sizes (CPU runs, GPU runs,
    runs per learner) if none runs yet: the first replica to start sets them, later ones join
    whatever is there."""
    connect()
    return ClassQueue.options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote(
        *sizes, silent_s
    )


class ClassSlots:
    """The slots of one device kind as one replica sees them: the same calls as
    labs/core/slots.py, answered by the class's queue. Positions are refreshed for all of this
    replica's waiting runs together every STATUS_SECONDS (one call, which also tells the queue
    this replica is alive), so a page's redraw never waits on the cluster. It remembers its
    runs (training, and waiting with their `begin`) to tell a queue that restarted."""

    def __init__(self, kind: str, replica: Callable[[], _Replica]):
        self.kind = kind
        self._replica = replica  # this process, as the class queue knows it (made on first use)
        self._lock = threading.Lock()
        self._ids: dict[int, str] = {}  # id(ticket) -> its ticket id in the class queue
        self._learners: dict[str, str] = {}  # ticket id -> its learner
        self._training: set[str] = set()  # ticket ids that began and hold a slot
        self._begins: dict[str, Callable[[], None]] = {}  # ticket id -> begin, while it waits
        self._waiting: dict[str, object] = {}  # ticket id -> the ticket, while it waits
        self._places: dict[str, tuple[int | None, bool]] = {}  # the same, in arrival order
        self._busy = (0, 0)
        self._limits: dict | None = None

    @property
    def queue(self):
        return self._replica().queue

    def _limits_now(self) -> dict:
        if self._limits is None:
            self._limits = ray.get(self.queue.sizes.remote())[self.kind]
        return self._limits

    @property
    def limit(self) -> int:
        return self._limits_now()["limit"]

    @property
    def per_learner(self) -> int:
        return self._limits_now()["per_learner"]

    def enter(self, ticket: object, learner: str, begin) -> None:
        ticket_id = self._known(ticket, learner)
        with self._lock:
            self._waiting[ticket_id] = ticket
        answer = ray.get(self.queue.enter.remote(ticket_id, learner, self.kind, self._replica().name))
        self._answered(ticket_id, answer, begin)

    def _known(self, ticket: object, learner: str) -> str:
        """A new ticket id for `ticket`, remembered with its learner."""
        ticket_id = uuid.uuid4().hex
        self._replica().watch(self)
        with self._lock:
            self._ids[id(ticket)] = ticket_id
            self._learners[ticket_id] = learner
        return ticket_id

    # -- batches (labs/core/batches.py): the same calls as labs/core/slots.py ------------------
    def free(self) -> bool:
        return ray.get(self.queue.free.remote(self.kind))

    def ride(self, ticket: object, learner: str) -> bool:
        ticket_id = self._known(ticket, learner)
        if ray.get(self.queue.ride.remote(ticket_id, learner, self.kind, self._replica().name)):
            return True
        with self._lock:
            self._forget(ticket)
        return False

    def ride_waiting(self, wanted: Callable[[object], bool], most: int) -> list:
        """This replica's waiting runs that `wanted` picks, up to `most` in the class's fair
        order, taken out of the queue to ride in a batch of this replica's."""
        with self._lock:
            candidates = {t: ticket for t, ticket in self._waiting.items() if wanted(ticket)}
        if not candidates or most <= 0:
            return []
        chosen = ray.get(self.queue.ride_waiting.remote(self.kind, list(candidates), most))
        with self._lock:
            for ticket_id in chosen:  # riding: no longer waiting, not holding a slot
                self._places.pop(ticket_id, None)
                self._begins.pop(ticket_id, None)
                self._waiting.pop(ticket_id, None)
        return [candidates[t] for t in chosen]

    def hand_over(self, ticket: object, batch: object) -> None:
        """The slot the run holds is its batch's from now on (the batch releases it)."""
        batch_id = self._known(batch, "")
        with self._lock:
            ticket_id = self._ids[id(ticket)]
            self._training.discard(ticket_id)
            self._training.add(batch_id)
        ray.get(self.queue.hand_over.remote(ticket_id, batch_id))

    def _answered(self, ticket_id: str, answer: tuple[bool, int | None, bool], begin) -> None:
        """Begin the run now, or wait for its turn (a callback on the queue's answer)."""
        began, position, held = answer
        if began:
            with self._lock:
                self._training.add(ticket_id)
                self._waiting.pop(ticket_id, None)
            begin()
            return
        with self._lock:
            self._places[ticket_id] = (position, held)
            self._begins[ticket_id] = begin
        turn = self.queue.turn.remote(ticket_id).future()
        turn.add_done_callback(lambda done: self._turn_came(ticket_id, done))

    def _turn_came(self, ticket_id: str, done) -> None:
        if done.exception() is not None:
            return  # the queue's process died: the run queues again when it restarts (rejoin)
        with self._lock:
            self._places.pop(ticket_id, None)
            self._waiting.pop(ticket_id, None)
            begin = self._begins.pop(ticket_id, None)
            if done.result() and begin is not None:
                self._training.add(ticket_id)
        if done.result() and begin is not None:
            begin()

    def leave(self, ticket: object) -> bool:
        with self._lock:
            ticket_id = self._ids.get(id(ticket))
        if ticket_id is None or not ray.get(self.queue.leave.remote(ticket_id)):
            return False
        with self._lock:
            self._forget(ticket)
        return True

    def release(self, ticket: object) -> None:
        with self._lock:
            ticket_id = self._forget(ticket)
        if ticket_id is not None:
            self.queue.release.remote(ticket_id)

    def _forget(self, ticket: object) -> str | None:
        ticket_id = self._ids.pop(id(ticket), None)
        if ticket_id is not None:
            self._learners.pop(ticket_id, None)
            self._training.discard(ticket_id)
            self._begins.pop(ticket_id, None)
            self._places.pop(ticket_id, None)
            self._waiting.pop(ticket_id, None)
        return ticket_id

    def rejoin(self, replica_name: str) -> None:
        """Tell a class queue that restarted (empty) this replica's runs: those training keep
        their slots, those waiting queue again and begin when their turn comes."""
        with self._lock:
            training = [(t, self._learners[t], self.kind) for t in self._training]
            waiting = [(t, self._learners[t], self.kind) for t in self._places]
        answers = ray.get(self.queue.rejoin.remote(replica_name, training, waiting), timeout=10)
        for ticket_id, answer in answers.items():
            with self._lock:
                begin = self._begins.pop(ticket_id, None)  # None: it left meanwhile
            if begin is not None:
                self._answered(ticket_id, tuple(answer), begin)

    def position(self, ticket: object) -> int | None:
        with self._lock:
            return self._places.get(self._ids.get(id(ticket), ""), (None, False))[0]

    def held_back(self, ticket: object) -> bool:
        with self._lock:
            return self._places.get(self._ids.get(id(ticket), ""), (None, False))[1]

    @property
    def active(self) -> int:
        return self._busy[0]

    @property
    def waiting(self) -> int:
        return self._busy[1]

    def waiting_ids(self) -> list[str]:
        with self._lock:
            return list(self._places)

    def heard(self, places: dict, busy: tuple[int, int]) -> None:
        with self._lock:
            for ticket_id in list(self._places):
                if ticket_id in places:
                    self._places[ticket_id] = places[ticket_id]
            self._busy = busy


class _Replica:
    """This server process as the class queue knows it: a name, and one thread that refreshes
    the places of its waiting runs (and says it is alive) every STATUS_SECONDS, and tells the
    queue its runs again if the queue restarted."""

    def __init__(
        self,
        sizes: tuple[int, int, int],
        queue_name: str = QUEUE_NAME,
        silent_s: float = REPLICA_SILENT_SECONDS,
    ):
        self.name = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.queue = class_queue(sizes, queue_name, silent_s)
        # started (a run's Stop travels through it); which start of it this replica knows
        self.epoch = ray.get(self.queue.places.remote(self.name, []), timeout=120)["epoch"]
        self._slots: list[ClassSlots] = []
        self._lock = threading.Lock()
        self.alive = True  # a test silences a replica to see the queue free its places
        threading.Thread(target=self._refresh, daemon=True, name="class-queue").start()

    def watch(self, slots: ClassSlots) -> None:
        with self._lock:
            if slots not in self._slots:
                self._slots.append(slots)

    def _refresh(self) -> None:
        while self.alive:
            with self._lock:
                watched = list(self._slots)
            try:
                ids = [i for s in watched for i in s.waiting_ids()]
                answer = ray.get(self.queue.places.remote(self.name, ids), timeout=10)
                if answer["epoch"] != self.epoch:
                    log.warning("the class queue restarted: this replica tells it its runs again")
                    for slots in watched:
                        slots.rejoin(self.name)
                    self.epoch = answer["epoch"]
                    continue  # positions in the queue as it is now
                for slots in watched:
                    slots.heard(answer["places"], tuple(answer["busy"][slots.kind]))
            except Exception as err:  # the queue restarting, the cluster busy: try again next time
                log.warning("class queue did not answer: %s", type(err).__name__)
            time.sleep(STATUS_SECONDS)


class ClassUsage:
    """The class's book of used training time (labs/core/usage.py's calls), kept in its queue,
    so a learner's quota holds across replicas; and their runs on other replicas. If the queue
    does not answer in time, the last answer stands (a page never hangs on it)."""

    ASK_SECONDS = 2.0

    def __init__(self):
        self._last: dict[str, float] = {}

    def used(self, learner: str, half_life_s: float) -> float:
        try:
            used = ray.get(this_replica().queue.used.remote(learner, half_life_s), timeout=self.ASK_SECONDS)
        except Exception as err:
            log.warning("class queue did not say a learner's used time: %s", type(err).__name__)
            return self._last.get(learner, 0.0)
        self._last[learner] = used
        return used

    def add(self, learner: str, seconds: float, half_life_s: float) -> None:
        this_replica().queue.add_used.remote(learner, seconds, half_life_s)

    def elsewhere(self, learner: str) -> int:
        replica = this_replica()
        try:
            asked = replica.queue.runs_elsewhere.remote(learner, replica.name)
            return ray.get(asked, timeout=self.ASK_SECONDS)
        except Exception as err:
            log.warning("class queue did not count a learner's runs: %s", type(err).__name__)
            return 0


_REPLICA: _Replica | None = None
_REPLICA_LOCK = threading.Lock()


def this_replica() -> _Replica:
    """This server process in the class queue (joined on first use)."""
    global _REPLICA
    with _REPLICA_LOCK:
        if _REPLICA is None:
            from labs.core.runner import SLOT_SIZES

            _REPLICA = _Replica(SLOT_SIZES)
        return _REPLICA


def disconnect() -> None:
    """Leave the cluster (at shutdown; tests): this replica stops asking the queue, whose
    places for it are then freed, and the runs it started end with it (Ray's owner rule)."""
    global _REPLICA
    with _REPLICA_LOCK:
        if _REPLICA is not None:
            _REPLICA.alive = False
        _REPLICA = None
    ray.shutdown()


def class_slots() -> dict[str, ClassSlots]:
    """This process's view of the class's slots, by device kind (labs/core/runner.py SLOTS)."""
    return {kind: ClassSlots(kind, this_replica) for kind in ("cuda", "cpu")}


# -- the executor: a run on Ray, seen from the server ----------------------------------------
