"""What a training loop yields: plain data only (numbers and NumPy arrays).

Plain data lets a run live in a worker thread today and in another process tomorrow, and lets
components draw it without ever seeing a model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


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


class Cadence:
    """When a loop should take a snapshot: at the first step (a quick first live update),
    then at most `max_snaps` times spread over the run and never sooner than `min_seconds`
    after the previous one, and at the last step.

    Time matters because snapshots cost evaluation passes: on a slow laptop a step-based
    schedule would spend more time measuring than learning, on a GPU it would update too rarely.
    """

    def __init__(self, total: int, max_snaps: int = 60, min_seconds: float = 0.0):
        self.total, self.min_seconds = total, min_seconds
        self.every = max(1, total // max_snaps)
        self._last = -math.inf

    def due(self, step: int) -> bool:
        if step in (1, self.total):
            return self._mark()
        if step % self.every or time.perf_counter() - self._last < self.min_seconds:
            return False
        return self._mark()

    def _mark(self) -> bool:
        self._last = time.perf_counter()
        return True
