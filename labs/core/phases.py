"""A run in phases: train, then analyse (explain, attack, export, time) under one step count.

Chapters 18 and 19 train a net and then do as much work again on it. Counting that work as
steps of the same `steps()` loop means the progress bar covers it and Stop is heard between
any two pieces of it, not only while the net trains: once the run must end, `take` hands out
no more steps and `ended` says so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import torch

from labs.core.control import current, steps


class Plan:
    """One run's steps across its phases: `take(n)` hands out the next n (fewer if the run must
    end); `ended` says whether it must."""

    def __init__(self, total: int):
        self.total = total
        self._ticks = steps(total)
        self.step = 0

    def take(self, n: int) -> Iterator[int]:
        for step in itertools.islice(self._ticks, n):
            self.step = step
            yield step

    @property
    def ended(self) -> bool:
        return current().should_end() is not None

    def close(self) -> None:
        self._ticks.close()


def minibatches(plan: Plan, n_steps: int, X: torch.Tensor, y: torch.Tensor, g: torch.Generator, size: int):
    """(step, batch number from 1, images, labels) for `n_steps` of the plan's steps: the data
    reshuffled at each epoch by `g`, sliced on its device."""
    per_epoch = math.ceil(len(X) / size)
    for i, step in enumerate(plan.take(n_steps)):
        if i % per_epoch == 0:
            order = torch.randperm(len(X), generator=g).to(X.device)
        batch = order[(i % per_epoch) * size :][:size]
        yield step, i + 1, X[batch], y[batch]


def descend(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
