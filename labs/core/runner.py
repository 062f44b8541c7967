"""The runner: trains a chapter's generator in a worker thread, behind a process-wide limit.

A page hands `(train, cfg, device)` to a `TrainingRun` and reads `run.view()` whenever it
redraws. The run waits in a visible FIFO queue until a slot for its device kind is free, keeps
its snapshots behind a lock, honours Stop between steps, and reports failures in words a
learner understands. Nothing here imports Streamlit.

Stopping: the runner `send`s True into the lab's generator at the next yield. A lab's loop ends
with `if (yield snap): break` and then yields its final snapshot with the weights, so Stop keeps
what was learned so far. A plain `for snap in train(cfg, device)` sends None and runs to the end.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

import torch

from labs.core.config import ConfigError
from labs.core.data import DataUnavailable
from labs.core.snapshot import Snapshot
from labs.core.workers import RemoteFailure, WorkerLost

# Failures whose message is already in a learner's words (a worker's failure was explained,
# and logged, inside the worker).
IN_WORDS = (ConfigError, DataUnavailable, RemoteFailure, WorkerLost)

log = logging.getLogger("dllab.runner")
MAX_LAYER_HISTORY = 120  # per-layer stats over time, thinned beyond this (enough to draw)


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"


class Diverged(RuntimeError):
    """The loss became NaN or infinite: a lesson about the learning rate, not a crash."""


class Slots:
    """At most `limit` runs at once on one kind of device; the others wait in FIFO order."""

    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self._active = 0
        self._waiting: list[object] = []
        self._cond = threading.Condition()

    def acquire(self, ticket: object, abandoned: Callable[[], bool]) -> bool:
        """Block until `ticket` is first in line and a slot is free; False if abandoned first."""
        with self._cond:
            self._waiting.append(ticket)
            while self._waiting[0] is not ticket or self._active >= self.limit:
                if abandoned():
                    self._waiting.remove(ticket)
                    self._cond.notify_all()
                    return False
                self._cond.wait(0.1)
            self._waiting.pop(0)
            self._active += 1
            self._cond.notify_all()
            return True

    def release(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def position(self, ticket: object) -> int | None:
        """1 for the next run to start; None when not waiting."""
        with self._cond:
            return self._waiting.index(ticket) + 1 if ticket in self._waiting else None

    @property
    def active(self) -> int:
        return self._active


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


# Process-wide: every session of this server process shares these pools.
SLOTS = {
    "cuda": Slots(_env_int("DLLAB_GPU_RUNS", 4)),
    "cpu": Slots(_env_int("DLLAB_CPU_RUNS", max(2, (os.cpu_count() or 2) // 2))),
}


def explain_failure(err: BaseException) -> str:
    """A message a learner can act on, for anything a run may raise."""
    text = str(err)
    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower():
        return (
            "Out of GPU memory: the server's GPU is full. Try a smaller model or batch "
            "size, or train again when other runs have finished."
        )
    if isinstance(err, Diverged):
        return f"Training diverged: {text} Try a smaller learning rate."
    if isinstance(err, IN_WORDS):
        return text
    return (
        f"The run failed ({type(err).__name__}: {text}). The app is fine; change a setting and train again."
    )


@dataclass
class RunView:
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

    @property
    def layers(self) -> dict:
        return self.layer_history[-1][1] if self.layer_history else {}

    def last(self, metric: str, default: float | None = None) -> float | None:
        """The latest value of a metric; None if no snapshot had it yet. Rows differ: some
        metrics come only at the end, and a side-by-side variant ("LSTM: test_acc") may have
        dropped out before its first snapshot."""
        return next((row[metric] for row in reversed(self.history) if metric in row), default)

    @property
    def alive(self) -> bool:
        return self.state in (RunState.QUEUED, RunState.RUNNING)


class TrainingRun:
    """One learner's run of one lab: start it, read `view()`, `stop()` it."""

    def __init__(
        self,
        train: Callable[..., Iterator[Snapshot]],
        cfg,
        device: torch.device,
        slots: Slots | None = None,
        label: str = "",
    ):
        self.id = uuid.uuid4().hex[:8]
        self.cfg, self.device, self.label = cfg, device, label
        self._train = train
        self._slots = slots or SLOTS[device.type if device.type in SLOTS else "cpu"]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._state, self._message = RunState.QUEUED, ""
        self._history: list[dict] = []
        self._layers: list[tuple[int, dict]] = []
        self._latest: Snapshot | None = None
        self._view: dict = {}
        self._notes: list[str] = []
        self._state_dict = None
        self._t_start = self._t_running = time.perf_counter()
        self._t_end: float | None = None
        self._thread = threading.Thread(target=self._work, daemon=True, name=f"run-{self.id}")

    # -- control ---------------------------------------------------------------------------
    def start(self) -> TrainingRun:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to end at its next snapshot (or leave the queue); keeps what it learned."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has ended; True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def wait_for_first_snapshot(self, timeout: float) -> bool:
        return self._first.wait(timeout)

    # -- worker ----------------------------------------------------------------------------
    def _work(self) -> None:
        if not self._slots.acquire(self, self._stop.is_set):
            self._finish(RunState.STOPPED, "Stopped while waiting in the queue.")
            return
        gen = None
        try:
            with self._lock:
                self._state, self._t_running = RunState.RUNNING, time.perf_counter()
            gen = self._train(self.cfg, self.device)
            snap = next(gen)
            while True:
                self._record(snap)
                if snap.final:
                    break
                snap = gen.send(self._stop.is_set())
            stopped = self._stop.is_set()
            self._finish(
                RunState.STOPPED if stopped else RunState.DONE,
                "Stopped: the curves and weights so far are kept." if stopped else "",
            )
        except StopIteration:
            self._finish(RunState.STOPPED if self._stop.is_set() else RunState.DONE, "")
        except Exception as err:  # a run must never take the app down: report it in words
            if not isinstance(err, (Diverged, *IN_WORDS)):  # an operator's bug: log the trace
                log.exception("run %s failed", self.id)
            self._finish(RunState.FAILED, explain_failure(err))
        finally:
            if gen is not None:
                gen.close()
            self._slots.release()
            self._first.set()

    def _record(self, snap: Snapshot) -> None:
        with self._lock:
            if snap.metrics:
                self._history.append({"step": snap.step, **snap.metrics})
            if snap.layers:
                self._layers.append((snap.step, snap.layers))
                if len(self._layers) > MAX_LAYER_HISTORY:
                    self._layers = self._layers[::2]  # keep the whole time span, half as dense
            self._notes += [n for n in snap.notes if n not in self._notes]
            if snap.state_dict is not None:
                self._state_dict = snap.state_dict
            self._view = {**self._view, **snap.view}  # the final snapshot adds, never erases
            self._latest = snap
        self._first.set()

    def _finish(self, state: RunState, message: str) -> None:
        with self._lock:
            self._state, self._message, self._t_end = state, message, time.perf_counter()

    # -- reading ---------------------------------------------------------------------------
    def view(self) -> RunView:
        with self._lock:
            now = self._t_end or time.perf_counter()
            latest = self._latest
            progress = latest.step / max(latest.total_steps, 1) if latest else 0.0
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
                history=list(self._history),
                layer_history=list(self._layers),
                latest=latest,
                view=self._view,
                notes=list(self._notes),
                state_dict=self._state_dict,
                cfg=self.cfg,
            )
