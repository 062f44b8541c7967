"""What a training loop yields: plain data only (numbers and NumPy arrays).

Plain data lets a run be driven on a thread or in a worker process without changing a chapter,
and lets the figures draw it without ever seeing a model.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from labs.core.control import current


@dataclass
class Snapshot:
    step: int
    total_steps: int
    metrics: dict[str, float] = field(default_factory=dict)  # appended to the run's history
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-layer stats, over time
    view: dict[str, Any] = field(default_factory=dict)  # the latest picture (grids, filters)
    notes: list[str] = field(default_factory=list)  # things the learner should know (fallbacks)
    state_dict: dict[str, torch.Tensor] | None = None  # on CPU, on the final snapshot only
    final: bool = False


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights on the CPU, safe to keep after the run ends."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class Stopwatch:
    """Time that runs only while its owner is working.

    When several runs share one thread (a side-by-side comparison steps each in turn), wall
    time would charge each run for the others' work, and a snapshot's cost would look many
    times larger than it is. It reads the run's clock (control.py)."""

    def __init__(self):
        self._clock = current().clock
        self._spent, self._since = 0.0, None

    def resume(self) -> None:
        self._since = self._clock()

    def pause(self) -> None:
        if self._since is not None:
            self._spent += self._clock() - self._since
            self._since = None

    def now(self) -> float:
        running = self._clock() - self._since if self._since is not None else 0.0
        return self._spent + running


_clocks = threading.local()


def clock() -> Callable[[], float]:
    """The clock of whatever is running on this thread now: a side-by-side variant's own
    stopwatch, else the run's clock (control.py)."""
    return getattr(_clocks, "now", None) or current().clock


@contextmanager
def timed_by(watch: Stopwatch) -> Iterator[None]:
    """Run a block on `watch`'s clock: Cadences created inside keep reading it."""
    previous = getattr(_clocks, "now", None)
    _clocks.now = watch.now
    watch.resume()
    try:
        yield
    finally:
        watch.pause()
        if previous is None:
            del _clocks.now
        else:
            _clocks.now = previous


# A run's snapshots take at most this share of its time, the frames drawn from them included
# (they are drawn before the next step, where a snapshot's cost is read); with the frames drawn
# between snapshots (≤ ~1.5%: labs/core/frames.py) and a run's first snapshot (always taken),
# watching a run costs it at most ~10% of its time.
SNAPSHOT_SHARE = 0.06
STEP_WEIGHT = 0.2  # how much each step's time moves the running mean a snapshot's cost is net of
# A paced loop waits on purpose between its steps: a snapshot made in that time costs the run
# nothing (the next step keeps its time), so it may take half the share the loop spends waiting
# on top (the playground's boundary: ~11 → ~16 a second at its watchable pace). The waits shrink
# as snapshots use them, and with them this share: the run is never slowed past SNAPSHOT_SHARE.
IDLE_USE = 0.5


class Cadence:
    """When a loop should take a snapshot: at the first step (a quick first live update), at
    most `max_snaps` times spread over the run, and at the last step.

    Snapshots cost evaluation passes, and their frames are drawn as they are made, so time
    decides too: the next one waits at least `min_seconds` after the last began, and long
    enough that the last one's cost is at most `share` of that time (SNAPSHOT_SHARE unless the
    chapter's frames between snapshots leave it more), which keeps watching a run (snapshots
    and frames) within ~10% of it on a slow laptop while a GPU still updates several times a
    second (bench/drawing.py measures it). A watchable pace's waits between steps
    are not counted as the snapshot's cost: a paced run has that time to spare, and spends part
    of it on more snapshots (IDLE_USE).
    """

    def __init__(
        self, total: int, max_snaps: int = 60, min_seconds: float = 0.0, share: float = SNAPSHOT_SHARE
    ):
        self.total, self.min_seconds, self.share = total, min_seconds, share
        self._now = clock()  # bound once: a run's own clock, even while another run is active
        self._control = current()  # its waits on purpose (a watchable pace) are not a snapshot's cost
        self._slept_at = 0.0
        self.every = max(1, total // max_snaps)
        self._last = -math.inf
        self._last_step = -math.inf
        self._cost = 0.0
        self._measuring = False
        self._step_seconds = 0.0  # a step's own time: a running mean of calls without a snapshot
        self._previous: tuple[float, float] | None = None  # (time, slept) at the last call
        self._idle = 0.0  # the share of its time the loop waits on purpose: a running mean

    def due(self, step: int) -> bool:
        now, slept = self._now(), self._control.slept
        if self._measuring:  # the first call after a snapshot: now we know what it cost (less the
            # step made since, and any wait on purpose)
            spent = now - self._last - (slept - self._slept_at) - self._step_seconds
            self._cost, self._measuring = max(0.0, spent), False
        elif self._previous is not None:
            wall, waited = now - self._previous[0], slept - self._previous[1]
            self._step_seconds += STEP_WEIGHT * (wall - waited - self._step_seconds)
            if wall > 0:
                self._idle += STEP_WEIGHT * (min(1.0, waited / wall) - self._idle)
        self._previous = (now, slept)
        if step in (1, self.total):
            return self._mark(now, step)
        if step % self.every or now - self._last < self._wait():
            return False
        return self._mark(now, step)

    def _wait(self) -> float:
        """Seconds from one snapshot's start to the next's."""
        return max(self.min_seconds, self._cost / (self.share + IDLE_USE * self._idle))

    def along(self, step: int) -> bool:
        """Whether a snapshot taken now for others (a batch measures its members together)
        may count as this loop's: at least half its wait and half its steps have passed. If
        so, it is marked as taken."""
        now = self._now()
        if self._measuring:
            return False  # its own snapshot was taken at this very step
        waited = now - self._last >= 0.5 * self._wait()
        if not waited or step - self._last_step < self.every / 2:
            return False
        return self._mark(now, step)

    def _mark(self, now: float, step: int) -> bool:
        self._last, self._last_step, self._measuring = now, step, True
        self._slept_at = self._control.slept
        return True


def weights_bytes(state_dict: dict, cfg) -> bytes:
    """A .pt file with the weights and the config that made them (torch.load(..., weights_only=True)
    reads it back; the config is stored as plain values)."""
    import dataclasses
    import io

    buffer = io.BytesIO()
    torch.save({"state_dict": state_dict, "config": dataclasses.asdict(cfg)}, buffer)
    return buffer.getvalue()
