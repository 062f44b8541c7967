"""One way to drive a lab's loop, wherever it runs: on the runner's own thread or in a worker
process (labs/core/workers.py). Both call `drive`, so a run makes the same snapshots, curve
points and live frames in either place, paced by the same clock; only the way messages travel
home differs (a call on this thread, a queue from the worker).

A job's messages, in the order the loop makes them:

    ("points", [{"step": s, name: value}, ...])   dense curve points, ~10 times a second
    ("snap", Snapshot)                             every snapshot the loop yields
    ("frame", {name: JSON bytes})                  the live figures that changed (light first)

The loop hears Stop through its Control (labs/core/control.py); nothing is sent into it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from labs.core.budget import Limits
from labs.core.control import Control, Ending, installed
from labs.core.frames import FrameMaker, light_first
from labs.core.snapshot import Snapshot

Emit = Callable[[str, object], None]


@dataclass(frozen=True)
class Job:
    """A run as its driver needs it; picklable, so a worker process gets its own copy."""

    train: Callable[..., Iterator[Snapshot]]
    cfg: object
    device: torch.device
    limits: Limits
    views: Callable | None = None  # the chapter's live views (figures/views/), or None: no frames
    clock: Callable[[], float] = time.monotonic  # what every pacing decision reads


def drive(job: Job, control: Control, emit: Emit) -> None:
    """Run `job.train` under `control` to its final snapshot, emitting its messages as they are
    made. The loop ends early when the control says so; whatever it raises propagates."""
    outlet = Outlet(job.views, job.cfg, job.clock, emit)
    control.sink = outlet.points
    with installed(control):  # a generator's code runs on the thread that advances it
        gen = job.train(job.cfg, job.device)
        try:
            for snap in gen:
                outlet.snap(snap)
                if snap.final:
                    return
        finally:
            gen.close()


class Outlet:
    """One run's messages as its loop makes them: curve points, snapshots, and the live frames
    drawn from them (none without views)."""

    def __init__(self, views: Callable | None, cfg, clock: Callable[[], float], emit: Emit):
        self.frames = FrameMaker(views, cfg, clock) if views is not None else None
        self.emit = emit

    def points(self, points: list[dict]) -> None:  # from inside the loop, ~10 times a second
        self.emit("points", points)
        if self.frames is not None:
            self.frames.history.add_points(points)
            self._send_frame()

    def snap(self, snap: Snapshot) -> None:
        self.emit("snap", snap)
        if self.frames is not None:
            self.frames.history.add(snap)
            self._send_frame(force=snap.final or len(self.frames.history.history) <= 1)

    def _send_frame(self, force: bool = False) -> None:
        for part in light_first(self.frames.frame(force)):
            self.emit("frame", part)


class ThreadJob:
    """A job driven on the caller's thread. Stop and the time budget are heard between steps;
    memory is not enforced, since it cannot be told apart from the rest of the process."""

    def __init__(self, job: Job):
        self.job = job
        self.control = Control(seconds=job.limits.seconds, clock=job.clock)
        self.ending: Ending | None = None
        self.peak_bytes = 0

    @property
    def process_id(self) -> int:
        return os.getpid()

    def request_stop(self) -> None:
        self.control.stop.set()

    def progress(self) -> tuple[int, int]:
        return int(self.control.progress[0]), int(self.control.progress[1])

    def run(self, receive: Emit) -> None:
        """Drive the job to its end, handing each message to `receive` as it is made."""
        drive(self.job, self.control, receive)
        self.ending = self.control.ending


class InThread:
    """The executor for one process: tests, AppTest, benchmarks of the loop itself. A run is
    driven on the runner's own thread, inside the server's process and GIL."""

    def start(self, job: Job) -> ThreadJob:
        return ThreadJob(job)


IN_THREAD = InThread()
