"""What a view function reads off a run: the rows of metrics its snapshots carried, the dense
per-step curve, per-layer statistics over time, the latest picture of every kind, its notes
and its config.

The engine fills one in the worker while the run trains (labs/core/history.py) and the runner
hands the page a copy when it has ended (labs/core/runner.py RunView): the figures read both
the same way, so what is drawn live and at the end cannot disagree.
"""

from __future__ import annotations


class RunRecord:
    def __init__(self, cfg=None):
        self.cfg = cfg
        self.history: list[dict] = []  # one row of metrics per snapshot, with its "step"
        self.curve: list[dict] = []  # dense points: {"step": s, name: mean of ≤10 steps}
        self.layer_history: list[tuple[int, dict]] = []  # (step, {layer: statistics})
        self.view: dict = {}  # the latest picture of every kind, merged
        self.notes: list[str] = []

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
