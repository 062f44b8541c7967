"""Worker processes that run training loops away from the web server's GIL, and that the
server can always take back.

Why processes: a training loop makes dozens of calls into torch per step, and each call gives
up and retakes Python's GIL. In the server process, every page redraw holds the GIL for tens
of milliseconds: measured here, a 1.3 s CNN run took 117 s beside a busy redraw thread.

Why the server stays in charge: a worker and the server share a Stop flag and a step counter
in shared memory (labs/core/control.py), so Stop reaches the loop between two steps and the
page sees the step count without waiting for a snapshot. A worker that does not end within
`STOP_GRACE_SECONDS` of Stop (one step can take minutes), runs past its time, or grows past
its memory ceiling is killed and replaced: the learner keeps the curves received so far.

This is the server's side of a worker; what runs inside one is labs/core/worker_process.py.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
import types
from contextlib import contextmanager

from labs.core.budget import Limits, size
from labs.core.control import Ending
from labs.core.driver import Emit, Job
from labs.core.failures import CutShort, RemoteFailure, WorkerLost
from labs.core.worker_process import serve

log = logging.getLogger("dllab.workers")
_CTX = mp.get_context("spawn")  # fork after torch has started threads can deadlock the child
STOP_GRACE_SECONDS = 3.0  # after Stop, a loop that has not ended by then is mid-way in a long step
HARD_MEMORY_FACTOR = 1.5  # past this share of its budget a worker is killed, not asked to stop
POLL_SECONDS = 0.2
CUDA_LEFT_BYTES = 64 * 2**20  # GPU memory a worker may keep reserved after a job before it is replaced


_MAIN_LOCK = threading.Lock()


@contextmanager
def _bare_main():
    """Spawn re-imports the parent's __main__ in every child. Under `streamlit run` that is
    the app script, which would start a second server's worth of set-up in the worker; the
    worker needs only `labs`, so it is shown an empty __main__ while it starts."""
    with _MAIN_LOCK:
        real = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = real


class Worker:
    """One worker process, for runs on one kind of device: a "cpu" worker never runs a CUDA job,
    so it never holds a CUDA context (hundreds of MB of GPU memory each) it does not use."""

    def __init__(self, kind: str = "cpu"):
        self.kind = kind
        self.jobs, self.stop = _CTX.Queue(), _CTX.Event()
        self._inbox, home = _CTX.Pipe(duplex=False)
        self._reading = threading.Lock()  # one reader of the pipe at a time
        self.progress = _CTX.RawArray("q", 2)  # [steps done, total], written by the worker
        self.proc = _CTX.Process(
            target=serve,
            args=(self.jobs, home, self.stop, self.progress, os.getpid(), kind),
            daemon=True,
            name="dllab-worker",
        )
        with _bare_main():
            self.proc.start()
        home.close()  # the worker holds the only write end: its death reads as end-of-file
        self.ready = False
        self.baseline = 0  # resident bytes once torch and the labs are imported
        self._jobs_sent = 0
        self._handshake = threading.Lock()  # one reader of the "ready" message

    def wait_ready(self) -> None:
        with self._handshake:
            if not self.ready:
                _, _, self.baseline = self.get()  # the "ready" message: torch imported, warmed up
                self.ready = True

    def poll_ready(self) -> bool:
        """Whether the worker has said it is ready, without waiting for it."""
        if self.ready or not self._handshake.acquire(blocking=False):
            return self.ready  # someone is already waiting for the message
        try:
            if not self.ready:
                _, _, self.baseline = self.get(timeout=0)
                self.ready = True
        except queue.Empty:
            pass
        finally:
            self._handshake.release()
        return self.ready

    def get(self, timeout: float | None = None):
        """The next message, waiting at most `timeout` (None: until one comes): queue.Empty if
        none came, WorkerLost once the process has died (its pipe reads end-of-file)."""
        with self._reading:
            if not self._inbox.poll(timeout):
                raise queue.Empty
            try:
                return self._inbox.recv()
            except (EOFError, OSError):
                self.proc.join(1)
                raise WorkerLost(self.proc.exitcode) from None

    def send(self, job: Job) -> int:
        """Hand the worker a job; its number tags the messages that come back."""
        self.wait_ready()
        self.stop.clear()
        self.progress[0] = self.progress[1] = 0
        self._jobs_sent += 1
        self.jobs.put((self._jobs_sent, job))
        return self._jobs_sent

    def resident(self) -> int:
        """The worker's resident memory, read from /proc (0 where that cannot be read)."""
        try:
            with open(f"/proc/{self.proc.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()


class RemoteJob:
    """One run in a worker borrowed from `pool`, seen from the server: its messages, its step
    count, Stop, and a watchdog that kills the worker when it will not end."""

    def __init__(self, pool: WorkerPool, job: Job):
        self.limits = job.limits
        self.ending: Ending | None = None
        self.peak_bytes = 0
        self.gpu_left = 0  # GPU memory the worker kept reserved after the run
        self._pool = pool
        self._worker = pool.borrow(job.device.type)
        self._base = self._worker.resident()  # the run's memory counts from here
        self._job = self._worker.send(job)
        self._started = time.monotonic()
        self._watch_at = self._started
        self._stop_asked: float | None = None
        self._finished = False  # the worker said "end" or "error": it is free again
        self._released = False  # the worker went back to the pool: it may train another run
        self._releasing = threading.Lock()

    def request_stop(self) -> None:
        """Stop this run between two steps. Once the worker has gone back to the pool it may
        train another learner's run: a late Stop (a closed tab's, after its run ended) must
        not reach that one."""
        with self._releasing:
            if self._released:
                return
            if self._stop_asked is None:
                self._stop_asked = time.monotonic()
            self._worker.stop.set()

    def progress(self) -> tuple[int, int]:
        return int(self._worker.progress[0]), int(self._worker.progress[1])

    @property
    def process_id(self) -> int:
        return self._worker.proc.pid

    def run(self, receive: Emit) -> None:
        """Hand each message the worker sends (labs/core/driver.py) to `receive` until the run
        ends; a failure inside the worker arrives as RemoteFailure, in the learner's words."""
        try:
            while True:
                kind, payload = self._next()
                if kind in ("snap", "points", "frame"):
                    receive(kind, payload)
                    continue
                self._finished = True
                if kind == "error":
                    raise RemoteFailure(payload)
                self.ending, peak, self.gpu_left = payload
                self.peak_bytes = max(self.peak_bytes, peak)
                return
        finally:
            self._release()

    def _next(self):
        """The job's next message. The watchdog looks every POLL_SECONDS whatever arrives: a
        worker that keeps sending is held to its time, memory and Stop grace all the same."""
        while True:
            now = time.monotonic()
            if now >= self._watch_at:
                self._watch_at = now + POLL_SECONDS
                self._watch()
            try:
                job, kind, payload = self._worker.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if job == self._job:
                return kind, payload

    def _watch(self) -> None:
        """Kill the worker if it will not end by itself in time."""
        now = time.monotonic()
        used = self._worker.resident() - self._base
        self.peak_bytes = max(self.peak_bytes, used)
        if self._stop_asked is not None and now - self._stop_asked > STOP_GRACE_SECONDS:
            self._cut(Ending.STOP, f"no answer {STOP_GRACE_SECONDS:g} s after Stop")
        if now - self._started > self.limits.seconds + STOP_GRACE_SECONDS:
            self._cut(Ending.TIME, f"past {self.limits.seconds:g} s")
        if used > HARD_MEMORY_FACTOR * self.limits.memory_bytes:
            self._cut(Ending.MEMORY, f"{size(used)} resident, budget {size(self.limits.memory_bytes)}")

    def _cut(self, ending: Ending, detail: str):
        self._worker.kill()
        raise CutShort(ending, detail)

    def _release(self) -> None:
        """Give the worker back for the next run, or replace it if it is gone, or still busy
        (the job did not end cleanly: its last messages are drained for at most the Stop grace,
        however many it keeps sending, then it is ended)."""
        worker = self._worker
        if not self._finished and worker.alive:  # an exception here left the job mid-way
            worker.stop.set()
            if not self._drained(worker, time.monotonic() + STOP_GRACE_SECONDS):
                worker.kill()
        with self._releasing:
            self._released = True
        self._pool.give_back(worker, self.gpu_left)

    def _drained(self, worker: Worker, deadline: float) -> bool:
        """Read the job's messages until its end; False if that has not come by `deadline`."""
        try:
            while time.monotonic() < deadline:
                number, kind, _ = worker.get(timeout=max(0.01, deadline - time.monotonic()))
                if number == self._job and kind in ("end", "error"):
                    return True
        except (queue.Empty, WorkerLost):
            pass
        return False


class WorkerPool:
    """The executor for a server: each run is driven in a worker process borrowed from here
    and given back after. A worker that died, was killed, or kept much memory after its run is
    replaced in the background."""

    def __init__(self):
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()  # lent to a run now
        self._lock = threading.Lock()
        self.size: dict[str, int] = {}  # how many workers of each kind the server wants warm
        self._closed = False

    def start(self, job: Job) -> RemoteJob:
        return RemoteJob(self, job)

    def prestart(self, n: int, kind: str = "cpu") -> None:
        """Start n workers for `kind` runs now (each imports torch, the labs and their views:
        seconds), so first runs need not wait."""
        workers = [Worker(kind) for _ in range(n)]
        with self._lock:
            self._idle[:0] = workers  # behind any given back: theirs is warm memory (borrow)
            self.size[kind] = self.size.get(kind, 0) + n

    def wait_ready(self) -> None:
        """Block until every idle worker has imported torch and the labs (benchmarks use it)."""
        with self._lock:
            idle = list(self._idle)
        for worker in idle:
            worker.wait_ready()

    def readiness(self) -> tuple[int, int]:
        """(idle workers ready to train, idle workers)."""
        with self._lock:
            idle = list(self._idle)
        return sum(w.alive and w.poll_ready() for w in idle), len(idle)

    def process_ids(self) -> set[int]:
        """The process ids of the idle workers (which pool a run was driven in)."""
        with self._lock:
            return {w.proc.pid for w in self._idle}

    def borrow(self, kind: str = "cpu") -> Worker:
        """An idle worker for `kind` runs ("cpu" or "cuda"), or a new one if none is idle: the
        one given back last (new ones wait at the front of the line). Its memory is warm: its
        chapter's data cached, its pages faulted in, which on a VM slow to hand pages over is
        0.1-0.5 s of a run's first step. So a learner's next run starts where the last one left
        off."""
        with self._lock:
            alive = [w for w in self._idle if w.alive]
            mine = [w for w in alive if w.kind == kind]
            ready = [w for w in mine if w.poll_ready()]  # a new one may still be importing torch
            worker = (ready or mine)[-1] if mine else Worker(kind)
            self._idle = [w for w in alive if w is not worker]
            self._busy.add(worker)
            return worker

    def give_back(self, worker: Worker, gpu_left: int = 0) -> None:
        """Take back a worker whose run has ended; one that kept much memory (RAM, or GPU memory
        reserved after its cache was emptied) is replaced instead."""
        with self._lock:
            self._busy.discard(worker)
            closed = self._closed
        bloated = worker.ready and worker.resident() - worker.baseline > Limits.from_env().memory_bytes / 2
        if worker.alive and not bloated and gpu_left <= CUDA_LEFT_BYTES and not closed:
            with self._lock:
                self._idle.append(worker)
            return
        if worker.alive:
            worker.kill()  # memory a finished run left behind goes back to the system
        self._replace(worker.kind)

    def close(self) -> None:
        """At server shutdown: end every worker, idle or lent to a run (stop the runs first:
        labs/core/runner.py stop_every_run, so that they keep what they learned)."""
        with self._lock:
            self._closed, workers, self._idle = True, [*self._idle, *self._busy], []
        for worker in workers:
            worker.kill()

    def _replace(self, kind: str) -> None:
        with self._lock:
            if self._closed:
                return
            short = self.size.get(kind, 0) - len([w for w in self._idle if w.alive and w.kind == kind])
        if short > 0:
            threading.Thread(
                target=self._add_one, args=(kind,), daemon=True, name="worker-replacement"
            ).start()

    def _add_one(self, kind: str) -> None:
        worker = Worker(kind)
        with self._lock:
            self._idle.insert(0, worker)


POOL = WorkerPool()  # the server's pool: the lifespan prestarts it (server/lifespan.py)
