"""A run's history: everything its loop has reported so far, as plain data.

The server keeps one per run (what the page shows when the run ends: final figures, Captum,
downloads, questions); a worker keeps its own copy, from which it draws the live figures. Both
are filled the same way, so the figures drawn live and at the end cannot disagree.
"""

from __future__ import annotations

from labs.core.snapshot import Snapshot

MAX_LAYER_HISTORY = 120  # per-layer stats over time, thinned beyond this (enough to draw)
MAX_CURVE_POINTS = 20_000  # dense curve points kept; thinned (every other) beyond this


class Reported:
    """What can be read off a run's reports; shared by `History` and the runner's `RunView`
    (both have `history`, `layer_history`, `curve`)."""

    history: list[dict]
    layer_history: list[tuple[int, dict]]
    curve: list[dict]

    @property
    def layers(self) -> dict:
        return self.layer_history[-1][1] if self.layer_history else {}

    def last(self, metric: str, default: float | None = None) -> float | None:
        """The latest value of a metric; None if no snapshot had it yet. Rows differ: some
        metrics come only at the end, and a side-by-side variant ("LSTM: test_acc") may have
        dropped out before its first snapshot."""
        return next((row[metric] for row in reversed(self.history) if metric in row), default)

    def series(self, metric: str) -> tuple[list, list]:
        """(steps, values) of one metric: the dense curve when the loop logged it at every step,
        else the snapshots' values."""
        rows = [r for r in self.curve if metric in r] or [r for r in self.history if metric in r]
        return [r["step"] for r in rows], [r[metric] for r in rows]


class History(Reported):
    def __init__(self, cfg=None):
        self.cfg = cfg
        self.history: list[dict] = []  # one row of metrics per snapshot, with its "step"
        self.curve: list[dict] = []  # dense points: {"step": s, name: mean of ≤10 steps}
        self.layer_history: list[tuple[int, dict]] = []
        self.view: dict = {}  # the latest picture of every kind, merged
        self.notes: list[str] = []
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
