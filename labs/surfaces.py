"""2-D loss surfaces for the optimizer race (chapter 3): each a function of a (2,) tensor.

They are scaled so one learning rate (0.01) is stable for plain SGD on all of them: the race
then shows the optimizers' characters rather than which one happened to suit the scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Surface:
    label: str
    f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) -> loss, elementwise
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    note: str


def _rosenbrock(x, y):
    return ((1 - x) ** 2 + 100 * (y - x**2) ** 2) / 50


def _beale(x, y):
    return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2) / 10


def _saddle(x, y):
    return x**2 - y**2 + y**4 / 4  # a saddle at the origin, minima at y = ±√2


def _ill_conditioned(x, y):
    return 0.5 * (x**2 + 50 * y**2)  # curvature 50× steeper along y than along x


SURFACES = {
    "rosenbrock": Surface(
        "Rosenbrock",
        _rosenbrock,
        (-1.5, 2.0),
        ((1.0, 1.0),),
        (-2, 2),
        (-1, 3),
        "A curved, flat-bottomed valley: easy to find, slow to follow.",
    ),
    "beale": Surface(
        "Beale",
        _beale,
        (1.0, 1.6),
        ((3.0, 0.5),),
        (-1, 4),
        (-1.5, 2),
        "Steep walls and a flat plateau around a minimum at (3, 0.5).",
    ),
    "saddle": Surface(
        "Saddle",
        _saddle,
        (1.8, 0.01),
        ((0.0, 2**0.5), (0.0, -(2**0.5))),
        (-2, 2),
        (-2.2, 2.2),
        "Starts almost on the ridge: gradient descent lingers there.",
    ),
    "ill_conditioned": Surface(
        "Ill-conditioned quadratic",
        _ill_conditioned,
        (-4.0, 1.0),
        ((0.0, 0.0),),
        (-4.5, 1),
        (-1.5, 1.5),
        "An elongated bowl: SGD zig-zags across, momentum rolls along.",
    ),
}


def grid(surface: Surface, n: int = 90) -> dict[str, np.ndarray]:
    """The surface sampled on an n×n grid, for contours: x (n,), y (n,), z (n, n) row = y."""
    xs = torch.linspace(*surface.x_range, n)
    ys = torch.linspace(*surface.y_range, n)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return {"x": xs.numpy(), "y": ys.numpy(), "z": surface.f(gx, gy).numpy()}


def distance_to_minimum(surface: Surface, point: torch.Tensor) -> float:
    return min(float(torch.dist(point, torch.tensor(m))) for m in surface.minima)
