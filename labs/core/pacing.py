"""Runs too fast to watch, played at a pace the eye can follow.

Fitting a curve or racing optimizers on a surface takes well under a millisecond a step: the
whole run would end before the page's second frame, and the descent the chapter is about would
never be seen moving. At the "watchable" speed the loop waits between steps (`steps(total,
per_second)`, labs/core/control.py), so 300 steps take about 5 s, as TensorFlow Playground
steps one epoch per frame; it computes exactly what it would at full speed, only later. "Full
speed" is one choice away.
"""

from __future__ import annotations

import dataclasses

from labs.core.budget import PACE_GIVEN_UP, Cost
from labs.core.config import knob

WATCHABLE_STEPS_PER_SECOND = 60.0
WATCHABLE_EPOCHS_PER_SECOND = 24.0  # the playground: an epoch a frame, as TensorFlow Playground's
SPEEDS = {"watchable": "watchable (60 steps a second)", PACE_GIVEN_UP: "full speed"}


def speed_knob(default: str = "watchable", watchable: str = SPEEDS["watchable"]):
    """The Speed choice; `watchable`: how that speed reads in this chapter."""
    return knob(
        default,
        "Speed",
        "Watchable: the run waits between steps so the eye can follow; the numbers are the same.",
        choices=tuple(SPEEDS),
        labels={**SPEEDS, "watchable": watchable},
    )


def per_second(speed: str, watchable: float = WATCHABLE_STEPS_PER_SECOND) -> float | None:
    """Steps a second for `steps(total, per_second)`: None at full speed; `watchable` steps a
    second at the watchable speed (a chapter whose steps are a fraction of an epoch plays so
    many epochs a second instead)."""
    return watchable if speed == "watchable" else None


def paced(cost: Cost, speed: str, watchable: float = WATCHABLE_STEPS_PER_SECOND) -> Cost:
    """A run's cost with its waiting on purpose counted (at most one step's wait per step)."""
    rate = per_second(speed, watchable)
    return dataclasses.replace(cost, wait=max(cost.wait, 1 / rate)) if rate else cost
