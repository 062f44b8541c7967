"""Worker processes that run training generators away from the web server's GIL.

Why: a training loop makes dozens of calls into torch per step, and each call gives up and
retakes Python's GIL. In the server process, every page redraw holds the GIL for tens of
milliseconds, and each retake waits out a whole switch interval: measured here, a 1.3 s CNN
run took 117 s beside a busy redraw thread. In its own process it runs at full speed.

`remote(train)` returns a drop-in replacement for a lab's `train(cfg, device)`: a generator in
this process that proxies to a pre-started worker, with the same protocol (send True to stop;
the worker's lab then yields its final snapshot with the weights). Snapshots are plain data, so
they cross the process boundary as they are.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import sys
import threading
import types
from collections.abc import Callable
from contextlib import contextmanager

log = logging.getLogger("dllab.workers")
_CTX = mp.get_context("spawn")  # fork after torch has started threads can deadlock the child


class WorkerLost(RuntimeError):
    """The worker process died mid-run (killed for memory, crashed)."""


class RemoteFailure(RuntimeError):
    """The run failed inside the worker; the message is already in the learner's words."""


def _serve(jobs, results, stop) -> None:
    """The worker's main loop: run one job at a time, stream its snapshots back."""
    from labs.core.device import configure_threads, warm_up
    from labs.core.runner import explain_failure

    configure_threads()
    _import_labs()  # a first job should not wait for a chapter's imports (sklearn: seconds)
    warm_up()
    results.put((None, "ready", None))
    while True:
        job, train, cfg, device = jobs.get()
        gen = None
        try:
            gen = train(cfg, device)
            snap = next(gen)
            while True:
                results.put((job, "snap", snap))
                if snap.final:
                    break
                snap = gen.send(stop.is_set())
            results.put((job, "end", None))
        except StopIteration:
            results.put((job, "end", None))
        except Exception as err:  # reported to the learner; the worker lives on
            log.exception("run failed in worker %s", os.getpid())
            results.put((job, "error", explain_failure(err)))
        finally:
            if gen is not None:
                gen.close()


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


def _import_labs() -> None:
    import importlib
    import pkgutil

    import labs

    for module in pkgutil.iter_modules(labs.__path__):
        importlib.import_module(f"labs.{module.name}")


class Worker:
    def __init__(self):
        self.jobs, self.results, self.stop = _CTX.Queue(), _CTX.Queue(), _CTX.Event()
        self.proc = _CTX.Process(
            target=_serve, args=(self.jobs, self.results, self.stop), daemon=True, name="dllab-worker"
        )
        with _bare_main():
            self.proc.start()
        self.ready = False
        self._jobs_sent = 0

    def wait_ready(self) -> None:
        if not self.ready:
            self._get()  # the "ready" message: torch imported and warmed up
            self.ready = True

    def _get(self):
        while True:
            try:
                return self.results.get(timeout=0.5)
            except queue.Empty:
                if not self.proc.is_alive():
                    raise WorkerLost(
                        "The training process stopped unexpectedly (often: the "
                        "server ran out of memory). Try a smaller model."
                    ) from None

    def run(self, train: Callable, cfg, device):
        """Proxy generator: yields the worker's snapshots; what is sent in becomes Stop.

        If the caller closes it early, the worker's run is stopped and drained to its end, so
        the next job on this worker starts from a clean queue.
        """
        self.wait_ready()
        self.stop.clear()
        self._jobs_sent += 1
        job = self._jobs_sent
        self.jobs.put((job, train, cfg, device))
        ended = False
        try:
            while True:
                kind, payload = self._next(job)
                if kind == "snap":
                    if (yield payload):
                        self.stop.set()
                    continue
                ended = True
                if kind == "error":
                    raise RemoteFailure(payload)
                return
        finally:
            if not ended:
                self.stop.set()
                while self._next(job)[0] == "snap":
                    pass

    def _next(self, job: int):
        while True:
            got_job, kind, payload = self._get()
            if got_job == job:
                return kind, payload


class WorkerPool:
    """Idle workers wait here between runs; a run borrows one and gives it back."""

    def __init__(self):
        self._idle: list[Worker] = []
        self._lock = threading.Lock()

    def prestart(self, n: int) -> None:
        """Start n workers now (each imports torch: seconds), so first runs need not wait."""
        workers = [Worker() for _ in range(n)]
        with self._lock:
            self._idle += workers

    def wait_ready(self) -> None:
        """Block until every idle worker has imported torch and the labs (benchmarks use it)."""
        with self._lock:
            idle = list(self._idle)
        for worker in idle:
            worker.wait_ready()

    def borrow(self) -> Worker:
        with self._lock:
            alive = [w for w in self._idle if w.proc.is_alive()]
            self._idle = alive[1:]
            return alive[0] if alive else Worker()

    def give_back(self, worker: Worker) -> None:
        if worker.proc.is_alive():
            with self._lock:
                self._idle.append(worker)


POOL = WorkerPool()


def remote(train: Callable) -> Callable:
    """`train` (a module-level lab function) run in a pooled worker process."""

    def run_remotely(cfg, device):
        worker = POOL.borrow()
        try:
            yield from worker.run(train, cfg, device)
        finally:
            POOL.give_back(worker)

    return run_remotely


def executor() -> str:
    """ "process" (the default: training off the server's GIL) or "thread" (DLLAB_EXECUTOR)."""
    return "thread" if os.environ.get("DLLAB_EXECUTOR", "process") == "thread" else "process"
