"""How a training loop hears Stop, and says how far it has got, between any two steps.

A lab's loop runs `for step in steps(total):`. Before every step, `steps` records how many
steps are done (the page reads it at once, without waiting for the next snapshot) and asks
whether the run must end: the learner pressed Stop, closed the tab or started another run, or
the run passed the server's time or memory budget. If so the loop ends early, and the lab
yields its final snapshot with the weights, exactly as after its last step.

This is the only way a loop hears Stop: through `steps()`, `Plan.take` (labs/core/phases.py,
built on `steps()`) and, inside work not counted in steps, `stop_requested()`. Nothing is sent
into the generator. The driver (labs/core/driver.py) installs a `Control` for the loop: on the
runner's thread, or in a worker process, where its Stop flag and step counter live in shared
memory so that the server can read the step count and ask for Stop while the worker computes.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum

MEMORY_CHECK_SECONDS = 0.05  # reading our own resident size costs ~20 µs: not at every step
POINT_STEPS = 10  # a curve point is the mean of at most this many steps' values
FLUSH_SECONDS = 1 / 30  # curve points leave the loop at most this often: a browser's pace
PAUSE_SLICE = 0.05  # a paced loop waits in slices this long, so Stop is heard within them


class Ending(StrEnum):
    """Why a loop ended before its last step."""

    STOP = "stop"  # the learner (Stop, a closed tab, a newer run of theirs)
    TIME = "time"  # past the server's time budget per run
    MEMORY = "memory"  # past the server's memory budget per run


class Control:
    """The shared state between a running loop and its runner.

    `stop` is anything with is_set() and set() (threading.Event, or a multiprocessing Event
    for a worker); `progress` anything indexable with two integers, [steps done, total]
    (a list, or a multiprocessing RawArray the server reads while the worker trains).

    `clock` is what every pacing decision of the run reads (when curve points leave, when a
    snapshot is due, when a frame is drawn, the time budget): time.monotonic, or, in tests, a
    clock that ticks by reads, which makes a run's frames the same wherever it is driven."""

    def __init__(
        self,
        stop=None,
        progress=None,
        seconds=None,
        memory_bytes=None,
        rss_start=None,
        sink=None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.sink = sink  # receives dense curve points (a list of {"step": s, name: value})
        self.prefix = ""  # a side-by-side variant's "LSTM: " in front of what it logs
        self.clock = clock
        self._pending: dict[str, list] = {}
        self._points: list[dict] = []
        self._curves: set[str] = set()  # curves that have a point: the first is one step's value
        self._flushed_at = -math.inf  # the first points leave at once
        self.stop = stop if stop is not None else threading.Event()
        self.progress = progress if progress is not None else [0, 0]
        self.deadline = clock() + seconds if seconds else None
        self.memory_bytes = memory_bytes  # growth of this process's resident memory allowed
        self._rss_start = rss_start if rss_start is not None else resident_bytes() if memory_bytes else 0
        self._next_memory_check = -math.inf
        self.ending: Ending | None = None
        self.peak_bytes = 0
        self.slept = 0.0  # seconds a paced loop has waited on purpose (not work: labs/core/snapshot.py)

    def report(self, done: int, total: int) -> None:
        self.progress[0], self.progress[1] = done, total
        if self._points and self.clock() - self._flushed_at > FLUSH_SECONDS:
            self.flush()

    # -- dense curves: every step's value, as means of at most POINT_STEPS steps -------------
    def log(self, step: int, values: dict) -> None:
        first = False
        for name, value in values.items():
            name = self.prefix + name
            pending = self._pending.setdefault(name, [])
            pending.append(value.detach() if hasattr(value, "detach") else float(value))
            if len(pending) >= POINT_STEPS or name not in self._curves:
                first |= name not in self._curves
                self._curves.add(name)
                self._point(step, name)
        if first:  # a run's first loss leaves now, before its first evaluation: the first number
            self.flush()

    def _point(self, step: int, name: str) -> None:
        pending = self._pending.pop(name)
        if hasattr(pending[0], "detach"):  # tensors: one device sync per point, not per step
            import torch

            mean = torch.stack(pending).float().mean().item()
        else:
            mean = sum(pending) / len(pending)
        self._points.append({"step": step, name: mean})

    def flush(self, step: int | None = None) -> None:
        """Hand the points made so far to the sink; with `step` (a loop ending), the partial
        means of what this loop logged too."""
        if step is not None:
            for name in [n for n in self._pending if n.startswith(self.prefix)]:
                self._point(step, name)
        self._flushed_at = self.clock()
        points, self._points = self._points, []
        if points and self.sink is not None:
            self.sink(points)

    sleep = staticmethod(time.sleep)  # a test may give an instance one that only counts

    def pause_until(self, at: float) -> None:
        """Wait until the run's clock reads `at` (a paced loop); Stop ends the wait at once."""
        while not self.should_end() and (left := at - self.clock()) > 0:
            began = self.clock()
            self.sleep(min(left, PAUSE_SLICE))
            self.slept += self.clock() - began

    def should_end(self) -> Ending | None:
        """Whether the loop must end now, and why (remembered in `ending`)."""
        if self.ending is None:
            self.ending = self._why_end()
        return self.ending

    def _why_end(self) -> Ending | None:
        if self.stop.is_set():
            return Ending.STOP
        now = self.clock()
        if self.deadline is not None and now > self.deadline:
            return Ending.TIME
        if self.memory_bytes and now >= self._next_memory_check:
            self._next_memory_check = now + MEMORY_CHECK_SECONDS
            self.peak_bytes = max(self.peak_bytes, self.used_bytes())
            if self.peak_bytes > self.memory_bytes:
                return Ending.MEMORY
        return None

    def used_bytes(self) -> int:
        """Memory this run has taken: growth of the process's resident size since the run
        began, or, on a GPU, the most torch's allocator has reserved there since the run began
        (a worker resets that peak and empties the cache between runs: labs/core/workers.py)."""
        used = resident_bytes() - self._rss_start
        try:
            import torch

            if torch.cuda.is_available() and torch.cuda.is_initialized():
                used = max(used, torch.cuda.max_memory_reserved())
        except ImportError:
            pass
        return used


class _Unlimited(Control):
    """What a loop sees when nobody installed a Control (a plain `for snap in train(...)`)."""

    def pause_until(self, at: float) -> None:
        pass  # nobody is watching: nothing to pace for

    def should_end(self) -> Ending | None:
        return None

    def log(self, step: int, values: dict) -> None:
        pass  # nobody draws these curves


_current = threading.local()


def current() -> Control:
    control = getattr(_current, "control", None)
    if control is None:
        control = _current.control = _Unlimited()
    return control


@contextmanager
def installed(control: Control) -> Iterator[Control]:
    """Drive a loop under `control` on this thread (a generator's code runs on the thread that
    calls next() on it, so the runner installs the control around its whole loop)."""
    previous = getattr(_current, "control", None)
    _current.control = control
    try:
        yield control
    finally:
        _current.control = previous


def steps(total: int, per_second: float | None = None) -> Iterator[int]:
    """1, 2, …, total; ends early when the run must end (see `Control.should_end`).
    `per_second`: at most that many steps a second, for a run too fast to watch otherwise
    (labs/core/pacing.py); the steps compute the same, only later."""
    control = current()
    done = 0
    begun = control.clock()
    try:
        for step in range(1, total + 1):
            control.report(step - 1, total)
            if per_second:
                control.pause_until(begun + (step - 1) / per_second)
            if control.should_end():
                return
            yield step
            done = step
        control.report(total, total)
    finally:
        control.flush(done)


def log(step: int, **values) -> None:
    """Record this step's values (a loss tensor needs no .item(): it is averaged on the device)
    for the live curves, which get every step as the mean of at most POINT_STEPS steps."""
    current().log(step, values)


@contextmanager
def prefixed(prefix: str) -> Iterator[None]:
    """Log under `prefix` ("LSTM: "): a side-by-side variant's own curves."""
    control = current()
    previous, control.prefix = control.prefix, prefix
    try:
        yield
    finally:
        control.prefix = previous


def stop_requested() -> bool:
    """For an inner loop that is not counted in steps (e.g. batches within one measured epoch)."""
    return current().should_end() is not None


def resident_bytes() -> int:
    """This process's resident memory (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
