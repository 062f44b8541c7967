"""What runs inside a worker process: its main loop, which drives one job at a time (a run, or a
batch of runs: labs/core/stackdrive.py) and sends its messages home through a pipe, and what any
process that trains pays once (`prepare_process`) or around each run (its GPU memory). The
server's side of a worker, and the pool, are labs/core/workers.py; a Ray worker uses the same
preparation (labs/core/cluster.py).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import types

from labs.core.control import Control, resident_bytes
from labs.core.driver import Emit, Job, drive
from labs.core.failures import EXPECTED, explain_failure
from labs.core.stackdrive import StackJob, drive_stack

log = logging.getLogger("dllab.workers")


def serve(jobs, home, stop, progress, server: int, kind: str = "cpu") -> None:
    """The worker's main loop: drive one job at a time (labs/core/driver.py), its messages
    going home through its pipe, tagged with the job's number. A "cuda" worker sets CUDA up
    before it says it is ready, so its baseline memory holds the CUDA libraries."""
    results = _Home(home)
    threading.Thread(target=_end_with, args=(server,), daemon=True, name="server-watch").start()
    from labs.core.device import configure_threads

    configure_threads()
    prepare_process(kind)
    gpu_left()
    baseline = resident_bytes()
    results.put((None, "ready", baseline))
    while True:
        number, job = jobs.get()
        if not isinstance(job, (Job, StackJob)):
            continue  # a command for a batch that has ended already
        if isinstance(job, StackJob):
            _serve_batch(job, number, jobs, results)
            continue
        limits = job.limits
        fresh_gpu_measure()
        # memory is this run's own: measured from where the process stands as it begins
        control = Control(
            stop, progress, limits.seconds, limits.memory_bytes, resident_bytes(), clock=job.clock
        )
        try:
            drive(job, control, _sender(results, number))
            results.put((number, "end", (control.ending, control.peak_bytes, gpu_left())))
        except Exception as err:  # reported to the learner; the worker lives on
            if isinstance(err, EXPECTED):
                log.info("run refused in worker %s: %s", os.getpid(), err)
            else:
                log.exception("run failed in worker %s", os.getpid())
            gpu_left()  # a run that overflowed the GPU must not leave its cache to the next one
            results.put((number, "error", explain_failure(err)))


def _serve_batch(job: StackJob, number: int, jobs, results: _Home) -> None:
    """Drive a batch (labs/core/stackdrive.py) until the server closes it; its commands come on
    the jobs queue, tagged with its number."""
    fresh_gpu_measure()
    try:
        drive_stack(job, _inlet(jobs, number), _sender(results, number))
        results.put((number, "end", (None, 0, gpu_left())))
    except Exception as err:  # the driver's own failure: every member hears it from the server
        log.exception("batch failed in worker %s", os.getpid())
        gpu_left()
        results.put((number, "error", explain_failure(err)))


def _inlet(jobs, number: int):
    """The batch's commands so far (with `wait`, at least one: the driver has nothing to do)."""

    def commands(wait: bool) -> list:
        got = []
        while True:
            try:
                tag, command = jobs.get(block=wait and not got)
            except queue.Empty:
                return got
            if tag == number:
                got.append(command)

    return commands


def _end_with(server: int) -> None:
    """A worker does not outlive its server (killed, crashed): once its parent is gone, it goes."""
    while True:
        time.sleep(1.0)
        if os.getppid() != server:
            os._exit(0)


def prepare_process(kind: str = "cpu") -> None:
    """What a process that trains runs pays once, before its first job: a first job should not
    wait for a chapter's imports (sklearn, the figure helpers: seconds), so every registered
    chapter's lab and every chapter's live views are imported now, and torch is warmed up."""
    import figures.views
    from chapters import CHAPTERS
    from labs.core.contract import lab_of
    from labs.core.device import warm_up

    for chapter in CHAPTERS:
        lab_of(chapter.slug)
    _import_every_module(figures.views)
    warm_up(kind)


def fresh_gpu_measure() -> None:
    """On a GPU, the next run's memory is counted from its own start (labs/core/control.py)."""
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def gpu_left() -> int:
    """After a run: give the GPU cache back, and say what stays reserved (0 on the CPU)."""
    import torch

    if not torch.cuda.is_initialized():
        return 0
    # cuBLAS keeps its workspaces in the caching allocator (tens of MB per stream on Hopper):
    # without clearing them every GPU worker would look as if its run had kept memory
    clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear_workspaces is not None:
        clear_workspaces()
    torch.cuda.empty_cache()
    return torch.cuda.memory_reserved()


class _Home:
    """The worker's end of its pipe home. A pipe, not a queue: when the worker dies, even in the
    middle of a message, the server reads end-of-file at once instead of waiting for ever.

    A sending thread writes to the pipe, so the loop does not wait while the server reads: a
    snapshot is larger than the pipe's buffer, and a busy server's reader thread may wait for
    its interpreter lock between two reads (a batch's dozens of members were measured spending
    half their time there). At most OUTBOX messages wait; past that the loop waits after all."""

    OUTBOX = 256

    def __init__(self, conn):
        self.conn = conn
        self._outbox: queue.Queue = queue.Queue(self.OUTBOX)
        threading.Thread(target=self._send, daemon=True, name="home-sender").start()

    def put(self, message) -> None:
        self._outbox.put(message)

    def _send(self) -> None:
        while True:
            self.conn.send(self._outbox.get())


def _sender(results: _Home, number: int) -> Emit:
    """What the driver calls with each message: home, tagged with the job."""
    return lambda kind, payload: results.put((number, kind, payload))


def _import_every_module(package: types.ModuleType) -> None:
    """Import every module directly in a package."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
