"""Divergence: the one check every lab's loop uses to end a run that blew up.

A loss that turns NaN or infinite is a lesson about the learning rate, not a crash: the loop
raises `Diverged`, the runner says "Training diverged: … Try a smaller learning rate.", and a
side-by-side comparison drops only that variant (labs/core/compare.py).

    watch = LossWatch()                  # or LossWatch(explode=EXPLODES), LossWatch(limit=1e8)
    for step in steps(total):
        ...
        watch.see(loss=loss)             # every step: the worst value kept on its device, no sync
        if cadence.due(step):
            watch.check(step)            # at snapshots: one sync, raises Diverged

`check` also takes values seen only then (`watch.check(step, test_loss=x)`).
"""

from __future__ import annotations

import math

import torch

from labs.core.failures import Diverged

EXPLODES = 4.0  # a loss past 4x where it started has blown up (the LR finder's rule)


class LossWatch:
    """The worst magnitude of each named value since the run began.

    explode: also diverged once a value passes this many times its first (a net can spike to
        1e17 and come back with every ReLU dead; the LR finder's rule is 4x).
    limit: also diverged past this absolute size (a fit whose loss passed it will not return).
    """

    def __init__(self, explode: float | None = None, limit: float | None = None):
        self.explode, self.limit = explode, limit
        self._worst: dict[str, torch.Tensor] = {}
        self._first: dict[str, float] = {}

    def see(self, **values) -> None:
        """Keep each value's worst magnitude (tensors stay on their device; NaN wins)."""
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                size = value.detach().abs().max()
            else:
                size = torch.tensor(abs(float(value)))
            worst = self._worst.get(name)
            if worst is None:
                if self.explode is not None:
                    self._first[name] = size.item()
                self._worst[name] = size
            else:
                self._worst[name] = torch.maximum(worst, size.to(worst.device))

    def check(self, step: int, **values) -> None:
        """Raise Diverged, in words a learner reads, if any value seen so far blew up."""
        self.see(**values)
        for name, worst in self._worst.items():
            value, what = worst.item(), name.replace("_", " ")
            if not math.isfinite(value):
                raise Diverged(f"the {what} became {value} by step {step}.")
            if self.limit is not None and value > self.limit:
                raise Diverged(f"the {what} reached {value:.3g} by step {step}.")
            first = self._first.get(name)
            if self.explode is not None and first is not None and value > self.explode * first:
                raise Diverged(
                    f"the {what} exploded to {value:.3g} by step {step} (it started at {first:.2f})."
                )
