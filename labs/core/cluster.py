"""Runs on a Ray cluster (DLLAB_BACKEND=ray), for a class larger than one server process.

With the local backend (the default) each server process drives its runs in its own worker
pool (labs/core/workers.py) and queues them in its own slots (labs/core/slots.py). With Ray,
several server processes (replicas, on one machine or several) share the cluster's machines:

- Each run is a Ray generator task (`train_on_ray`) that asks for what it needs: its CPU threads
  (DLLAB_RAY_CPUS_PER_RUN, default 1) and, for a GPU run, a share of one GPU
  (DLLAB_RAY_GPU_SHARE, default 0.25: four small runs share a GPU). It drives the lab's loop
  with the same driver as a local worker (labs/core/driver.py) and yields the same messages as
  they are made; the server reads them as a streaming generator.
- Every replica's runs queue in one named, detached actor (`ClassQueue`: "dllab-class" in the
  "dllab" namespace) holding the same fair slots as one process (labs/core/slots.py) for the
  whole class: a learner's place in the queue is the same whichever replica shows it, and the
  replicas together never start more runs than there are slots.
- Stop travels through that actor. Every BEAT_SECONDS the task tells it the run's step count
  and hears whether the run must stop; the loop hears Stop between two steps, exactly as in a
  local worker. A task still running STOP_GRACE_SECONDS after Stop, past its time, or past its
  hard memory ceiling is cancelled with force (its Ray worker process exits) and the learner
  reads the same words as for a killed local worker.

Ray is used as it comes from PyPI: `ray.init`, tasks, a detached actor, `ray.cancel`.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import threading
import time
import uuid

import ray

from labs.core.budget import size
from labs.core.control import Control, Ending, resident_bytes
from labs.core.driver import Job, drive
from labs.core.failures import EXPECTED, CutShort, RemoteFailure, WorkerLost, explain_failure
from labs.core.replica import connect, environment, this_replica
from labs.core.stackdrive import StackJob, drive_stack, taking_from
from labs.core.worker_process import fresh_gpu_measure, gpu_left, prepare_process
from labs.core.workers import HARD_MEMORY_FACTOR, STOP_GRACE_SECONDS

log = logging.getLogger("dllab.cluster")

BEAT_SECONDS = 0.2  # how often a running task and the queue hear from each other
POLL_SECONDS = 0.2  # how often the server's watchdog looks at a run, whatever arrives
START_SECONDS = 120.0  # a task no Ray worker has begun by then is given up (the cluster is full)
ENDED_KINDS = ("end", "error")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def resources_for(device_type: str) -> dict:
    """What one run asks Ray for: CPU threads, and a share of a GPU for a GPU run."""
    options = {"num_cpus": _env_float("DLLAB_RAY_CPUS_PER_RUN", 1.0), "max_retries": 0}
    if device_type == "cuda":
        # Ray ends a GPU task's worker after one task by default (max_calls=1); ours empty the
        # GPU cache after each run instead, so the next run need not import torch again
        options.update(num_gpus=_env_float("DLLAB_RAY_GPU_SHARE", 0.25), max_calls=0)
        options["runtime_env"] = environment("cuda")
    return options


# -- in the Ray worker ----------------------------------------------------------------------

_PREPARED = threading.Lock()
_prepared = False


def _prepare_once(threads: int) -> None:
    """A Ray worker imports every lab and view and warms torch before its first run; Ray keeps
    the process for later runs, which then start at once."""
    global _prepared
    with _PREPARED:
        if not _prepared:
            prepare_process()
            _prepared = True
    import torch

    torch.set_num_threads(max(1, threads))


@ray.remote(max_retries=0)
def warm_worker(threads: int = 1) -> int:
    """Make a Ray worker ready for runs (the server asks for one per slot as it starts)."""
    _prepare_once(threads)
    return os.getpid()


@ray.remote(max_retries=0)
def train_on_ray(job: Job, run_id: str, board, threads: int = 1):
    """One run, in a Ray worker: drive the job on a thread of its own, and yield its messages
    (labs/core/driver.py) as they are made, with a ("beat", (step, total, bytes used, pid))
    every BEAT_SECONDS; the last message is ("end", ...) or ("error", words)."""
    _prepare_once(threads)
    fresh_gpu_measure()
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    rss_start = resident_bytes()
    control = Control(
        threading.Event(), [0, 0], job.limits.seconds, job.limits.memory_bytes, rss_start, clock=job.clock
    )
    threading.Thread(target=_drive_into, args=(job, control, inbox), daemon=True, name="run").start()
    asked, next_beat = None, 0.0
    while True:
        now = time.monotonic()
        if now >= next_beat:
            next_beat = now + BEAT_SECONDS
            asked = _heard(asked, board, run_id, control)
            used = resident_bytes() - rss_start
            yield ("beat", (int(control.progress[0]), int(control.progress[1]), used, os.getpid()))
        try:
            kind, payload = inbox.get(timeout=max(0.0, next_beat - time.monotonic()))
        except queue.Empty:
            continue
        yield (kind, payload)
        if kind in ENDED_KINDS:
            return


def _heard(asked, board, run_id: str, control: Control):
    """Read the board's last answer (stop or not) without waiting for it, and ask again."""
    if asked is not None:
        ready, _ = ray.wait([asked], timeout=0)
        if not ready:
            return asked  # the board is busy: ask again once it has answered
        if ray.get(asked):
            control.stop.set()
    return board.beat.remote(run_id, int(control.progress[0]), int(control.progress[1]))


def _drive_into(job: Job, control: Control, inbox: queue.SimpleQueue) -> None:
    try:
        drive(job, control, lambda kind, payload: inbox.put((kind, payload)))
        inbox.put(("end", (control.ending, control.peak_bytes, gpu_left())))
    except Exception as err:  # reported to the learner; the Ray worker lives on
        if isinstance(err, EXPECTED):
            log.info("run refused in Ray worker %s: %s", os.getpid(), err)
        else:
            log.exception("run failed in Ray worker %s", os.getpid())
        gpu_left()
        inbox.put(("error", explain_failure(err)))


# -- batches: many learners' runs of one shape as one task (labs/core/batches.py) ------------

COMMAND_SECONDS = 0.05  # a batch on Ray asks the class queue for the server's commands this often


@ray.remote(max_retries=0)
def train_batch_on_ray(job: StackJob, batch_id: str, board, threads: int = 1):
    """A batch in a Ray worker: drive its stack (labs/core/stackdrive.py) on a thread of its
    own, hand it the server's commands (joins, Stops, the close) from the class queue's mailbox
    of `batch_id`, and yield its members' messages as they are made, with a ("beat", (bytes
    used, pid)) every BEAT_SECONDS; the last message is ("end", (None, peak bytes, GPU bytes
    left)) or ("error", words)."""
    _prepare_once(threads)
    fresh_gpu_measure()
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    commands: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_drive_batch_into, args=(job, commands, inbox), daemon=True, name="batch").start()
    rss_start, peak = resident_bytes(), 0
    asked, next_ask, next_beat = None, 0.0, 0.0
    while True:
        now = time.monotonic()
        if now >= next_ask:
            next_ask = now + COMMAND_SECONDS
            asked = _collected(asked, board, batch_id, commands)
        if now >= next_beat:
            next_beat = now + BEAT_SECONDS
            used = resident_bytes() - rss_start
            peak = max(peak, used)
            yield ("beat", (used, os.getpid()))
        try:
            kind, payload = inbox.get(timeout=max(0.0, min(next_ask, next_beat) - time.monotonic()))
        except queue.Empty:
            continue
        if kind == "end":
            payload = (None, peak, gpu_left())
        yield (kind, payload)
        if kind in ENDED_KINDS:
            return


def _collected(asked, board, batch_id: str, commands: queue.SimpleQueue):
    """Hand on the commands the class queue last answered with, without waiting for them, and
    ask again."""
    if asked is not None:
        ready, _ = ray.wait([asked], timeout=0)
        if not ready:
            return asked
        for blob in ray.get(asked):
            commands.put(pickle.loads(blob))
    return board.collect.remote(batch_id)


def _drive_batch_into(job: StackJob, commands: queue.SimpleQueue, inbox: queue.SimpleQueue) -> None:
    try:
        drive_stack(job, taking_from(commands), lambda kind, payload: inbox.put((kind, payload)))
        inbox.put(("end", None))
    except Exception as err:  # the stack's driver itself failed: every member hears it
        log.exception("batch failed in Ray worker %s", os.getpid())
        inbox.put(("error", explain_failure(err)))


class RayBatchHost:
    """A batch as one Ray task, seen from the server (the host labs/core/batches.py drives):
    commands go through the class queue's mailbox, messages come back as the task's stream."""

    def __init__(self, kind: str):
        connect()
        self.kind, self.id = kind, uuid.uuid4().hex
        self.process_id: int | None = None  # from the task's beats
        self._board = this_replica().queue
        self._task = None
        self._used = 0
        self._ended = False  # the task said its last word

    def begin(self, job: StackJob) -> None:
        options = resources_for(self.kind)
        threads = max(1, int(options["num_cpus"]))
        self._task = train_batch_on_ray.options(**options).remote(job, self.id, self._board, threads)

    def tell(self, command: tuple) -> None:
        self._board.post.remote(self.id, pickle.dumps(command))  # its classes need no import here

    def next(self, timeout: float):
        """The batch's next message for its members, or its end: queue.Empty after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            ready, _ = ray.wait([self._task], timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                raise queue.Empty
            try:
                kind, payload = ray.get(next(self._task))
            except StopIteration:
                self._ended = True
                raise WorkerLost(None) from None
            except ray.exceptions.RayError as err:
                log.warning("batch %s: Ray task lost: %s", self.id, err)
                raise WorkerLost(None) from None
            if kind != "beat":
                self._ended = self._ended or kind in ENDED_KINDS
                return kind, payload
            self._used, self.process_id = payload
            if time.monotonic() >= deadline:
                raise queue.Empty

    def wait_closed(self) -> None:
        """After "close": the task's own end, so that its Ray worker is free again."""
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        try:
            while not self._ended and time.monotonic() < deadline:
                self.next(max(0.01, deadline - time.monotonic()))
        except (queue.Empty, WorkerLost):
            pass

    def resident(self) -> int:
        return self._used  # above what the Ray worker held when the batch began

    def kill(self) -> None:
        if self._task is not None:
            ray.cancel(self._task, force=True)

    def finish(self) -> None:
        if not self._ended:
            self.kill()  # it did not end its batch cleanly: its worker goes
        self._board.forget.remote(self.id)


class RayRun:
    """One run as a Ray task, seen from the server: its messages, its step count, Stop, and a
    watchdog that cancels the task (its worker process exits) when it will not end."""

    def __init__(self, job: Job):
        connect()
        self.limits = job.limits
        self.ending = None
        self.peak_bytes = 0
        self.gpu_left = 0
        self.run_id = uuid.uuid4().hex
        self._board = this_replica().queue
        options = resources_for(job.device.type)
        threads = max(1, int(options["num_cpus"]))
        self._task = train_on_ray.options(**options).remote(job, self.run_id, self._board, threads)
        self._submitted = time.monotonic()
        self._began: float | None = None  # its first beat: the task runs in a Ray worker
        self._watch_at = self._submitted
        self._stop_asked: float | None = None
        self._progress = (0, 0)
        self._pid: int | None = None
        self._ended = False  # the task said its last word ("end" or "error") and returns

    def request_stop(self) -> None:
        if self._stop_asked is None:
            self._stop_asked = time.monotonic()
        self._board.stop.remote(self.run_id)

    def progress(self) -> tuple[int, int]:
        return self._progress

    @property
    def process_id(self) -> int | None:
        return self._pid

    def run(self, receive) -> None:
        """Hand each message of the task to `receive` until the run ends; a failure inside it
        arrives as RemoteFailure, in the learner's words."""
        try:
            while True:
                kind, payload = self._next()
                if kind == "beat":
                    step, total, used, self._pid = payload
                    self._began = self._began or time.monotonic()
                    self._progress = (step, total)
                    self.peak_bytes = max(self.peak_bytes, used)
                elif kind in ("snap", "points", "frame"):
                    receive(kind, payload)
                elif kind == "error":
                    self._ended = True
                    raise RemoteFailure(payload)
                else:
                    self._ended = True
                    self.ending, peak, self.gpu_left = payload
                    self.peak_bytes = max(self.peak_bytes, peak)
                    return
        except BaseException as err:
            if not self._ended:  # left mid-way (cut short, a failure here): its worker must go
                log.warning("run %s: cancelling its Ray task (%s)", self.run_id, type(err).__name__)
                ray.cancel(self._task, force=True)
            raise
        finally:
            self._board.forget.remote(self.run_id)

    def _next(self):
        while True:
            now = time.monotonic()
            if now >= self._watch_at:
                self._watch_at = now + POLL_SECONDS
                self._watch(now)
            ready, _ = ray.wait([self._task], timeout=POLL_SECONDS)
            if not ready:
                continue
            try:
                return ray.get(next(self._task))
            except StopIteration:
                raise WorkerLost(None) from None  # ended without saying how
            except ray.exceptions.RayError as err:
                log.warning("run %s: Ray task lost: %s", self.run_id, err)
                raise WorkerLost(None) from None

    def _watch(self, now: float) -> None:
        """Cancel the task if it will not end by itself in time. The clocks of Stop and of the
        run's time start when the task runs: before, it waits for a Ray worker (a new one first
        imports torch and the labs), hears Stop with its first beat and ends at once; killing
        it then would only cost the next run a warm worker."""
        if self._began is None:
            if now - self._submitted > START_SECONDS:
                raise RemoteFailure(
                    f"No training process of the class's cluster took this run within "
                    f"{START_SECONDS:g} s (the cluster is full, or a machine left it). Press Train "
                    "again in a moment."
                )
            return
        if self._stop_asked is not None and now - max(self._stop_asked, self._began) > STOP_GRACE_SECONDS:
            self._cut(Ending.STOP, f"no answer {STOP_GRACE_SECONDS:g} s after Stop")
        if now - self._began > self.limits.seconds + STOP_GRACE_SECONDS:
            self._cut(Ending.TIME, f"past {self.limits.seconds:g} s")
        if self.peak_bytes > HARD_MEMORY_FACTOR * self.limits.memory_bytes:
            self._cut(
                Ending.MEMORY, f"{size(self.peak_bytes)} resident, budget {size(self.limits.memory_bytes)}"
            )

    def _cut(self, ending: Ending, detail: str) -> None:
        raise CutShort(ending, detail)  # run() cancels the task with force


class RayExecutor:
    """The executor for a server on a Ray cluster (labs/core/runner.py default_executor)."""

    def start(self, job: Job) -> RayRun:
        return RayRun(job)

    def batch_host(self, kind: str) -> RayBatchHost:
        """Where a batch of runs trains: one Ray task (labs/core/batches.py)."""
        return RayBatchHost(kind)

    def warm(self, cpu_runs: int) -> None:
        """One ready Ray worker per CPU slot, so that first runs need not import torch; and this
        replica joins the class queue, through which its runs' Stop travels."""
        this_replica()
        options = resources_for("cpu")
        ray.get([warm_worker.options(**options).remote(1) for _ in range(cpu_runs)])


RAY = RayExecutor()
