"""Live frames: a run's figures, drawn where its snapshots are made and encoded once.

A chapter's live views are a pure function from a run's history to plain figure dicts
(figures/views/). A `FrameMaker` keeps the history where the run is driven (a worker process, or
the runner's thread in tests: labs/core/driver.py), calls that function when
something new arrived, encodes each figure to JSON bytes, and keeps only those that changed:
the server relays bytes and never builds a figure while a run trains.

Drawing takes the worker's time, not the learner's: a frame waits at least MIN_FRAME_SECONDS
after the previous one (a browser's pace), and long enough that frames stay a small share of
the run: a frame drawn from a new snapshot is counted in that snapshot's cost (labs/core/
snapshot.py Cadence measures it up to the next step), one drawn between snapshots (new curve
points, new numbers) waits CURVE_FRAME_SHARE times what the last one cost: watching a run stays
under about a tenth of it.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Callable

import numpy as np

from figures.views import NUMBERS
from labs.core.history import History

MIN_FRAME_SECONDS = 1 / 30  # ≤30 frames a second: as smooth as a browser shows a training run
FRAME_SHARE = 9  # a frame of a new snapshot: wait 9× its cost (a snapshot's share bounds it)
# A frame between snapshots carries new curve points and numbers only, yet every part is drawn
# and encoded again: waiting 65× its cost keeps these under ~1.5% of the run (the normalization
# chapter's took 2.4% at 30 a second), and they still come 15-30 times a second on this machine,
# more often than a browser redraws a curve (~3 times a second).
CURVE_FRAME_SHARE = 65
# A part this large (a mosaic of every unit, attention maps: 100 KB and more) … A chapter's main
# picture (a 40×40 boundary with its points 26 KB, the GAN's plane 40 KB, the optimizers' paths
# over their surface 45 KB) stays under it, so it moves with every snapshot.
HEAVY_BYTES = 64_000
HEAVY_SECONDS = 0.5  # … is resent at most twice a second: the curves move at the full rate

DTYPES = {"float32": "f4", "float64": "f8", "int8": "i1", "int16": "i2", "int32": "i4", "uint8": "u1"}


def _plain(obj):
    """json.dumps' fallback: arrays as plotly.js typed arrays (base64, half the size of text and
    exact), numpy scalars as numbers."""
    if isinstance(obj, np.ndarray):
        if obj.dtype == np.int64 or obj.dtype == np.bool_:
            obj = obj.astype(np.int32)
        elif obj.dtype.name not in DTYPES:
            obj = obj.astype(np.float32)
        packed = {"dtype": DTYPES[obj.dtype.name], "bdata": base64.b64encode(obj.tobytes()).decode()}
        if obj.ndim > 1:
            packed["shape"] = ", ".join(str(n) for n in obj.shape)
        return packed
    if isinstance(obj, np.generic):
        value = obj.item()
        return None if isinstance(value, float) and not math.isfinite(value) else value
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise TypeError(f"cannot send {type(obj).__name__} to the browser")


def _finite(obj):
    """JSON has no NaN or infinity: such plain floats become null (a gap in a plotly line)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(obj) -> bytes:
    """Plain data (dicts, lists, numbers, NumPy arrays) as compact JSON bytes."""
    try:
        text = json.dumps(obj, default=_plain, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a NaN or infinity somewhere among the plain floats
        text = json.dumps(_finite(obj), default=_plain, separators=(",", ":"), allow_nan=False)
    return text.encode()


class FrameMaker:
    """The worker's side of the live view: history in, changed figures (as bytes) out."""

    def __init__(self, views: Callable[[History], dict], cfg, clock: Callable[[], float] = time.monotonic):
        self.views = views
        self.history = History(cfg)
        self.clock = clock  # the run's clock (labs/core/control.py)
        self._sent: dict[str, bytes] = {}
        self._sent_at: dict[str, float] = {}
        self._heavy: set[str] = set()  # parts last encoded past HEAVY_BYTES
        self._last_at = -math.inf  # when the last frame was drawn
        self._spacing = 0.0  # its cost, as a wait before the next (times the runs sharing this process)
        self._drawn: object = None  # the snapshot the last frame was drawn from
        self.sharing: Callable[[], int] = lambda: 1  # runs drawing in this process's time (a batch)

    def frame(self, force: bool = False) -> dict[str, bytes]:
        """{name: JSON bytes} of every part that changed since the last frame; {} when it is too
        soon for another (unless forced: the first and the final snapshot always draw). A heavy
        part waits HEAVY_SECONDS between sends, so a browser's drawing keeps up with the curves."""
        now = self.clock()
        fresh = self.history.latest is not self._drawn  # a snapshot came since the last frame
        wait = max(MIN_FRAME_SECONDS, self._spacing * (FRAME_SHARE if fresh else CURVE_FRAME_SHARE))
        if not force and now < self._last_at + wait:
            return {}
        start = self.clock()
        drawn = self.views(self.history)
        if NUMBERS not in drawn and (latest := curve_numbers(self.history.curve)):
            drawn[NUMBERS] = latest
        parts = {
            name: to_json(part)
            for name, part in drawn.items()
            if force or not self._too_soon(name, now)  # a heavy part not due is not even encoded
        }
        self._heavy = {name for name in self._heavy if name not in parts}
        self._heavy |= {name for name, data in parts.items() if len(data) > HEAVY_BYTES}
        changed = {
            name: data
            for name, data in parts.items()
            if self._sent.get(name) != data and (force or not self._too_soon(name, now))
        }
        self._sent.update(changed)
        self._sent_at.update(dict.fromkeys(changed, now))
        # the runs drawing in this process share its time: a batch's frames stay as small a share
        self._spacing = (self.clock() - start) * self.sharing()
        self._last_at, self._drawn = now, self.history.latest
        return changed

    def _too_soon(self, name: str, now: float) -> bool:
        return name in self._heavy and now - self._sent_at.get(name, -1e9) < HEAVY_SECONDS


def curve_numbers(curve: list[dict], most: int = 6) -> list[list[str]]:
    """The latest value of each dense curve, as headline numbers: what a run shows from its
    first step on, before its first evaluation (and all along where its views have none)."""
    latest: dict[str, float] = {}
    for point in curve[-4 * most :]:
        latest.update((name, value) for name, value in point.items() if name != "step")
    return [[name.replace("_", " "), format(value, ".4g")] for name, value in list(latest.items())[:most]]


def light_first(frame: dict[str, bytes]) -> list[dict[str, bytes]]:
    """A frame as the messages to send, light parts (numbers, curves) ahead of heavy ones (a
    mosaic of every unit): a browser waiting for its next frame draws them while the heavy
    part is still on its way."""
    light = {name: data for name, data in frame.items() if len(data) <= HEAVY_BYTES}
    heavy = {name: data for name, data in frame.items() if name not in light}
    return [part for part in (light, heavy) if part]
