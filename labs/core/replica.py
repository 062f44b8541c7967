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
    this replica is alive), so a page's redraw never waits on the cluster."""

    def __init__(self, kind: str, replica: Callable[[], _Replica]):
        self.kind = kind
        self._replica = replica  # this process, as the class queue knows it (made on first use)
        self._lock = threading.Lock()
        self._ids: dict[int, str] = {}  # id(ticket) -> its ticket id in the class queue
        self._places: dict[str, tuple[int | None, bool]] = {}
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
        ticket_id = uuid.uuid4().hex
        replica = self._replica()
        with self._lock:
            self._ids[id(ticket)] = ticket_id
        began, position, held = ray.get(self.queue.enter.remote(ticket_id, learner, self.kind, replica.name))
        if began:
            begin()
            return
        with self._lock:
            self._places[ticket_id] = (position, held)
        replica.watch(self)
        turn = self.queue.turn.remote(ticket_id).future()
        turn.add_done_callback(lambda done: self._turn_came(ticket_id, done, begin))

    def _turn_came(self, ticket_id: str, done, begin) -> None:
        with self._lock:
            self._places.pop(ticket_id, None)
        if done.exception() is None and done.result():
            begin()

    def leave(self, ticket: object) -> bool:
        with self._lock:
            ticket_id = self._ids.get(id(ticket))
        if ticket_id is None or not ray.get(self.queue.leave.remote(ticket_id)):
            return False
        with self._lock:
            self._ids.pop(id(ticket), None)
            self._places.pop(ticket_id, None)
        return True

    def release(self, ticket: object) -> None:
        with self._lock:
            ticket_id = self._ids.pop(id(ticket), None)
        if ticket_id is not None:
            self.queue.release.remote(ticket_id)

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
    the places of its waiting runs (and says it is alive) every STATUS_SECONDS."""

    def __init__(
        self,
        sizes: tuple[int, int, int],
        queue_name: str = QUEUE_NAME,
        silent_s: float = REPLICA_SILENT_SECONDS,
    ):
        self.name = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.queue = class_queue(sizes, queue_name, silent_s)
        ray.get(self.queue.sizes.remote(), timeout=120)  # started (a run's Stop travels through it)
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
                for slots in watched:
                    slots.heard(answer["places"], tuple(answer["busy"][slots.kind]))
            except Exception as err:  # the queue restarting, the cluster busy: try again next time
                log.warning("class queue did not answer: %s", type(err).__name__)
            time.sleep(STATUS_SECONDS)


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
