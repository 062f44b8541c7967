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
    """When a loop should take a snapshot: at the first step (a quick first live update), at
    most `max_snaps` times spread over the run, and at the last step.

    Snapshots cost evaluation passes, so time decides too: the next one waits at least
    `min_seconds` and at least 3× what the previous snapshot cost, which keeps measuring
    under ~25% of the run on a slow laptop while a GPU still updates several times a second.
    """

    def __init__(self, total: int, max_snaps: int = 60, min_seconds: float = 0.0):
        self.total, self.min_seconds = total, min_seconds
        self.every = max(1, total // max_snaps)
        self._last = -math.inf
        self._cost = 0.0
        self._measuring = False

    def due(self, step: int) -> bool:
        now = time.perf_counter()
        if self._measuring:  # the first call after a snapshot: now we know what it cost
            self._cost, self._measuring = now - self._last, False
        if step in (1, self.total):
            return self._mark(now)
        if step % self.every or now - self._last < max(self.min_seconds, 3 * self._cost):
            return False
        return self._mark(now)

    def _mark(self, now: float) -> bool:
        self._last, self._measuring = now, True
        return True


def weights_bytes(state_dict: dict, cfg) -> bytes:
    """A .pt file with the weights and the config that made them (torch.load(..., weights_only=True)
    reads it back; the config is stored as plain values)."""
    import dataclasses
    import io

    buffer = io.BytesIO()
    torch.save({"state_dict": state_dict, "config": dataclasses.asdict(cfg)}, buffer)
    return buffer.getvalue()
