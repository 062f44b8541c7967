"""The runner: one learner's run of one lab, behind a process-wide limit of concurrent runs.

A page hands `(train, cfg, device)` to a `TrainingRun` and reads `run.view()` whenever it
redraws. The run is first weighed against the server's budget (labs/core/budget.py: refused
with a message that says what to lower), then waits in a visible queue, fair between learners,
until a slot for its device kind is free (labs/core/slots.py), and is driven by its executor: a
worker process from the pool (the default), or the runner's own thread (DLLAB_EXECUTOR=thread:
tests, AppTest). Both drive the loop with the same code (labs/core/driver.py). Nothing here
imports Streamlit.

Stopping: Stop reaches the loop between two steps (labs/core/control.py). The loop then yields
its final snapshot with the weights, so Stop keeps what was learned so far; a worker that
cannot answer in time is ended, and the curves received so far stay.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

import torch

from figures.record import RunRecord
from labs.core.batches import BATCHES
from labs.core.budget import Cost, Limits, judge, measured_speed
from labs.core.config import ConfigError, to_params
from labs.core.control import Ending
from labs.core.driver import IN_THREAD, Job
from labs.core.failures import IN_WORDS, CutShort, Diverged, WorkerLost, ending_message, explain_failure
from labs.core.history import History
from labs.core.slots import Slots
from labs.core.snapshot import Snapshot
from labs.core.workers import POOL

log = logging.getLogger("dllab.runner")


class RunState(StrEnum):
    """Where a run is. The live panel gets these names from here (components/live.py)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def alive(self) -> bool:
        return self in (RunState.QUEUED, RunState.RUNNING)


ENDED = tuple(s for s in RunState if not s.alive)  # done, stopped, failed


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


# Process-wide: every session of this server process shares these pools.
PER_LEARNER = _env_int("DLLAB_RUNS_PER_LEARNER", 1)  # runs one learner trains at once
# (CPU runs, GPU runs, runs per learner) at once; on Ray, for the whole class (the first
# replica to start sets them: labs/core/cluster.py)
SLOT_SIZES = (
    _env_int("DLLAB_CPU_RUNS", max(2, (os.cpu_count() or 2) // 2)),
    _env_int("DLLAB_GPU_RUNS", 4),
    PER_LEARNER,
)


def _slots() -> dict:
    """This process's slots, or, on Ray, its view of the class's slots."""
    if on_ray():
        from labs.core.replica import class_slots

        return class_slots()
    cpu, gpu, per_learner = SLOT_SIZES
    return {"cuda": Slots(gpu, per_learner), "cpu": Slots(cpu, per_learner)}


def on_ray() -> bool:
    """Whether runs go to a Ray cluster (DLLAB_BACKEND=ray) rather than this process's workers."""
    return os.environ.get("DLLAB_BACKEND", "local").strip().lower() == "ray"


SLOTS = _slots()


@dataclass
class RunView(RunRecord):
    """A consistent copy of a run's state for one redraw (safe to read without the lock)."""

    id: str
    state: RunState
    message: str
    progress: float
    eta_s: float | None
    elapsed_s: float
    queue_position: int | None
    history: list[dict]
    layer_history: list[tuple[int, dict]]
    latest: Snapshot | None
    view: dict = field(default_factory=dict)  # the latest picture of every kind, merged
    notes: list[str] = field(default_factory=list)
    state_dict: dict | None = None
    cfg: object = None
    step: int = 0  # steps done, as the loop reports them between steps (ahead of snapshots)
    total_steps: int = 0
    stopping: bool = False  # Stop was asked; the loop is winding down
    curve: list[dict] = field(default_factory=list)  # dense per-step points
    training_s: float = 0.0  # of elapsed_s, the time it trained (not queued)
    estimate_s: float | None = None  # the budget's estimate of its training time, made at start

    @property
    def alive(self) -> bool:
        return self.state.alive


def default_executor():
    """Worker processes (off the server's GIL, and killable); with DLLAB_BACKEND=ray, tasks on
    the Ray cluster (labs/core/cluster.py); or the runner's own thread when
    DLLAB_EXECUTOR=thread (tests and AppTest: one process is all there is)."""
    if os.environ.get("DLLAB_EXECUTOR", "process") == "thread":
        return IN_THREAD
    if on_ray():
        from labs.core.cluster import RAY

        return RAY
    return POOL


LIVE: weakref.WeakSet = weakref.WeakSet()  # every run queued or training in this process


def stop_every_run(timeout: float) -> bool:
    """At shutdown: ask every run to stop (each keeps what it learned), and wait at most
    `timeout` seconds for them all; True if they all ended."""
    runs = list(LIVE)
    for run in runs:
        run.stop()
    deadline = time.monotonic() + timeout
    return all(run.wait(max(0.0, deadline - time.monotonic())) for run in runs)


class TrainingRun:
    """One learner's run of one lab: start it, read `view()`, `stop()` it; `frames` holds its
    latest live figures (encoded), and `listeners` hear of every change."""

    def __init__(
        self,
        train: Callable[..., Iterator[Snapshot]],
        cfg,
        device: torch.device,
        slots: Slots | None = None,
        label: str = "",
        executor=None,
        learner: str = "",
        cost: Callable[[object], Cost] | None = None,
        limits: Limits | None = None,
        views: Callable | None = None,
        batch: tuple[Hashable, Callable] | None = None,
    ):
        self.id = uuid.uuid4().hex[:8]
        self.cfg, self.device, self.label = cfg, device, label
        self.learner = learner  # whose run: a browser or a logged-in user (server/learners.py)
        self.limits = limits or Limits.from_env()
        self._train, self._cost, self._views = train, cost, views
        self._executor = executor or default_executor()  # POOL, IN_THREAD, or a test's own
        # (key, stack): runs of one key may train together (labs/core/batches.py)
        self._batch = batch if batch is not None and BATCHES.batches(self._executor) else None
        self._joined = None  # the batch member this run became on arrival, if it joined one
        self._slots = slots or SLOTS[device.type if device.type in SLOTS else "cpu"]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._done = threading.Event()  # ended, and its slot (if it had one) given back
        self._job = None  # the executor's handle on the run, once it has a slot
        self.verdict = None  # the budget's estimate, when a cost function was given
        self._state, self._message = RunState.QUEUED, ""
        self._h = History(cfg)
        self.frames: dict[str, bytes] = {}  # the latest encoded part of each live figure
        self.listeners: list[Callable[[TrainingRun], None]] = []  # called on every change
        self.channel = None  # the live channel the page opened for it (server/channel.py)
        self._t_start = self._t_running = time.perf_counter()
        self._began = False  # it had its turn and trained
        self._t_end: float | None = None
        self._thread = threading.Thread(target=self._work, daemon=True, name=f"run-{self.id}")

    # -- control ---------------------------------------------------------------------------
    def start(self) -> TrainingRun:
        """Weigh the run against the budget, then queue it for a slot; it begins in its turn."""
        self._t_start = self._t_running = time.perf_counter()  # its time counts from Train
        refusal = self._refusal()
        if refusal:
            log.info("run %s refused by the budget: %s; settings %s", self.id, refusal, self._settings())
            return self.refuse(refusal)
        LIVE.add(self)
        # a free slot first (a batch of its own, on a core of its own), else an open batch; on
        # a GPU an open batch first: one batch per GPU, one CUDA context, wider kernels
        if (
            self._batch is not None
            and (self.device.type == "cuda" or not self._slots.free())
            and self._join()
        ):
            return self
        self._slots.enter(self, self.learner, self._thread.start)
        return self

    def _join(self) -> bool:
        """Join a batch of this run's key training now, if there is one with room and the
        learner may train another run: it starts at the batch's next step, taking no slot."""
        if not self._slots.ride(self, self.learner):
            return False
        self._joined = BATCHES.join(self._batch[0], self._job_spec())
        if self._joined is None:
            self._slots.release(self)
            return False
        self._thread.start()
        return True

    @property
    def batch_key(self):
        """The key of the batches this run may train in (None: it trains alone)."""
        return self._batch[0] if self._batch is not None else None

    def ride_in(self, batch) -> None:
        """Under the batch board's lock: this queued run left the queue (labs/core/slots.py
        ride_waiting) to train in `batch`, which has room; it starts at the batch's next step."""
        self._joined = batch.add(self._job_spec())
        self._thread.start()

    def _job_spec(self) -> Job:
        return Job(self._train, self.cfg, self.device, self.limits, self._views)

    def refuse(self, message: str) -> TrainingRun:
        """End the run before it starts, saying why (the budget, or the server's per-learner rules)."""
        self._finish(RunState.FAILED, message)
        self._first.set()
        self._done.set()
        return self

    def _refusal(self) -> str:
        if self._cost is None or self.cfg is None:
            return ""
        try:
            verdict = judge(self.cfg, self._cost, self.limits, measured_speed(self.device.type))
        except ConfigError as err:  # a value out of range: train() says it in the same words
            return str(err)
        self.verdict = verdict
        return "" if verdict.fits else verdict.message

    def stop(self) -> None:
        """Ask the run to end between two steps (or leave the queue); keeps what it learned."""
        self._stop.set()
        if self._slots.leave(self):
            self._finish(RunState.STOPPED, "Stopped while waiting in the queue.")
            self._first.set()
            self._done.set()
            LIVE.discard(self)
            return
        job = self._job
        if job is not None and not self._done.is_set():  # an ended run has nothing to stop
            job.request_stop()
        self._tell()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has ended and given back its slot; True if it has."""
        return self._done.wait(timeout)

    def wait_for_first_snapshot(self, timeout: float) -> bool:
        return self._first.wait(timeout)

    @property
    def running_seconds(self) -> float:
        """How long the run has trained (not counting its wait in the queue)."""
        with self._lock:
            if not self._began:  # queued, refused, or stopped before its turn
                return 0.0
            share = getattr(self._job, "share_seconds", None)  # a batch member: its share
            if share is not None and self._t_end is not None:
                return share
            return (self._t_end or time.perf_counter()) - self._t_running

    @property
    def process_id(self) -> int | None:
        """The process training this run (a worker's, or this one for a thread run)."""
        job = self._job
        return job.process_id if job is not None else None

    # -- worker ----------------------------------------------------------------------------
    def _work(self) -> None:
        """The run's own thread, started by the slots when its turn came."""
        try:
            with self._lock:
                self._state, self._t_running = RunState.RUNNING, time.perf_counter()
                self._began = True
            self._tell()
            self._job = running = self._driven()
            if self._stop.is_set():
                running.request_stop()
            running.run(self._receive)
            self._ended(running.ending, running.peak_bytes)
        except CutShort as cut:
            log.warning("run %s: worker ended by the server (%s); %s", self.id, cut.detail, self._settings())
            message = ending_message(cut.ending, self.limits, False, self._job.peak_bytes)
            self._finish(RunState.STOPPED, message)
        except Exception as err:  # a run must never take the app down: report it in words
            self._log_failure(err)
            self._finish(RunState.FAILED, explain_failure(err))
        finally:
            self._slots.release(self)
            BATCHES.fill_open()  # its learner's queued run may now ride in a batch with room
            self._first.set()
            self._done.set()
            LIVE.discard(self)

    def _driven(self):
        """What drives the run: the batch it joined, a batch it opens in its slot, or its
        executor alone."""
        if self._joined is not None:
            return self._joined
        job = self._job_spec()
        if self._batch is not None:
            key, stack = self._batch
            return BATCHES.begin(key, stack, job, self._executor, self._slots, self)
        return self._executor.start(job)

    def _receive(self, kind: str, payload) -> None:
        with self._lock:
            if kind == "snap":
                self._h.add(payload)
            elif kind == "points":
                self._h.add_points(payload)
            elif kind == "frame":
                self.frames = {**self.frames, **payload}
        if kind == "snap":
            self._first.set()
        self._tell()

    def _tell(self) -> None:
        for listener in list(self.listeners):
            listener(self)

    def _ended(self, ending: Ending | None, peak_bytes: float) -> None:
        if ending is None:
            self._finish(RunState.DONE, "")
            return
        if ending != Ending.STOP:
            log.warning("run %s stopped by the budget (%s); settings %s", self.id, ending, self._settings())
        message = ending_message(ending, self.limits, self._h.state_dict is not None, peak_bytes)
        self._finish(RunState.STOPPED, message)

    def _log_failure(self, err: Exception) -> None:
        if isinstance(err, WorkerLost):
            log.warning("run %s: worker lost (exit code %s); settings %s", self.id, err, self._settings())
        elif isinstance(err, (Diverged, *IN_WORDS)):
            log.info("run %s ended: %s", self.id, err)
        else:  # an operator's bug: log the trace
            log.exception("run %s failed; settings %s", self.id, self._settings())

    def _settings(self) -> str:
        try:
            return f"{self.label or 'run'} {to_params(self.cfg)}"
        except TypeError:  # not a Config (tests hand in plain generators)
            return f"{self.label or 'run'} {self.cfg!r}"

    def _finish(self, state: RunState, message: str) -> None:
        with self._lock:
            self._state, self._message, self._t_end = state, message, time.perf_counter()
        self._tell()

    # -- reading ---------------------------------------------------------------------------
    def _progress(self) -> tuple[int, int]:
        """Steps done and in all: from the loop itself when it is running, else the snapshots."""
        job, latest = self._job, self._h.latest
        done, total = job.progress() if job is not None else (0, 0)
        if latest is not None and (total == 0 or latest.step > done):
            done, total = latest.step, latest.total_steps
        return done, total

    def steps_done(self) -> int:
        """The run's step count alone (the live channel looks at it many times a second)."""
        return self._progress()[0]

    def status(self) -> dict:
        """The run's state for the live panel's progress line: cheap, no history copied."""
        done, total = self._progress()
        with self._lock:
            now = self._t_end or time.perf_counter()
            running_s = now - self._t_running if self._state != RunState.QUEUED else 0.0
            progress = 1.0 if self._state == RunState.DONE else done / max(total, 1)
            eta = running_s * (1 - progress) / progress if 0 < progress < 1 else None
            return {
                "run": self.id,
                "state": self._state.value,
                "message": self._message,
                "step": done,
                "total": total,
                "progress": progress,
                "eta": eta if self._state == RunState.RUNNING else None,
                "elapsed": now - self._t_start,
                "training": running_s,
                "estimate": self.verdict.seconds if self.verdict is not None else None,
                "queue": self._slots.position(self),
                "held_back": self._slots.held_back(self),  # waits for the learner's own run
                "per_learner": self._slots.per_learner,
                "busy": sum(s.active for s in SLOTS.values()),
                "stopping": self._stop.is_set(),
                "notes": list(self._h.notes),
            }

    def view(self) -> RunView:
        done, total = self._progress()
        with self._lock:
            h = self._h
            now = self._t_end or time.perf_counter()
            progress = done / max(total, 1)
            running_s = now - self._t_running if self._state != RunState.QUEUED else 0.0
            eta = running_s * (1 - progress) / progress if 0 < progress < 1 else None
            return RunView(
                id=self.id,
                state=self._state,
                message=self._message,
                progress=1.0 if self._state == RunState.DONE else progress,
                eta_s=eta if self._state == RunState.RUNNING else None,
                elapsed_s=now - self._t_start,
                queue_position=self._slots.position(self),
                history=list(h.history),
                layer_history=list(h.layer_history),
                latest=h.latest,
                view=h.view,
                notes=list(h.notes),
                state_dict=h.state_dict,
                cfg=self.cfg,
                step=done,
                total_steps=total,
                stopping=self._stop.is_set(),
                curve=list(h.curve),
                training_s=running_s,
                estimate_s=self.verdict.seconds if self.verdict is not None else None,
            )
