"""A run's history: everything its loop has reported so far, as plain data.

The server keeps one per run (what the page shows when the run ends: final figures, Captum,
downloads, questions); a worker keeps its own copy, from which it draws the live figures. Both
are filled the same way, and read the way the figures read any run (figures/record.py), so
the figures drawn live and at the end cannot disagree.
"""

from __future__ import annotations

from figures.record import RunRecord
from labs.core.snapshot import Snapshot

MAX_LAYER_HISTORY = 120  # per-layer stats over time, thinned beyond this (enough to draw)
MAX_CURVE_POINTS = 20_000  # dense curve points kept; thinned (every other) beyond this


class History(RunRecord):
    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.state_dict: dict | None = None
        self.latest: Snapshot | None = None

    def add(self, snap: Snapshot) -> None:
        if snap.metrics:
            self.history.append({"step": snap.step, **snap.metrics})
        if snap.layers:
            self.layer_history.append((snap.step, snap.layers))
            if len(self.layer_history) > MAX_LAYER_HISTORY:
                self.layer_history = self.layer_history[::2]  # the whole span, half as dense
        self.notes += [n for n in snap.notes if n not in self.notes]
        if snap.state_dict is not None:
            self.state_dict = snap.state_dict
        self.view = {**self.view, **snap.view}  # the final snapshot adds, never erases
        self.latest = snap

    def add_points(self, points: list[dict]) -> None:
        self.curve += points
        if len(self.curve) > MAX_CURVE_POINTS:
            self.curve = self.curve[::2]
