"""Chapter 22's deliveries: the generated record the bias experiment learns from (labs/ethics.py),
its columns as the net reads them, and Kamiran & Calders' reweighing of its rows.

Lateness depends on the distance, rain, the parcel's weight and the hour; B's deliveries follow
other roads (the distance matters less for them, the hour more), are logged late more often by a
recorded gap in log-odds, and each group's labels may be flipped at its own rate. The district is
one of the group's own with probability `proxy`, else any of the ten.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from labs.tables import split

DISTRICTS, OWN_DISTRICTS_B = 10, (7, 8, 9)  # B lives mostly in the last three districts
NUMERIC = ("distance_km", "parcel_kg", "hour", "rain")  # then the ten districts, then the group


def uses_group(remedy: str) -> bool:
    """Whether the net reads the group column (all ways but dropping it)."""
    return remedy != "drop"


def inputs_of(x: torch.Tensor, remedy: str) -> torch.Tensor:
    """The columns the net of `remedy` reads: all, or all but the last (the group)."""
    return x if uses_group(remedy) else x[:, :-1]


@dataclass(frozen=True)
class Deliveries:
    x: np.ndarray  # (rows, 4 numeric + 10 district + 1 group), float32, numeric standardized later
    late: np.ndarray  # (rows,) 0/1 as recorded
    group: np.ndarray  # (rows,) 0 = A, 1 = B


@lru_cache(maxsize=8)
def deliveries(
    rows: int, group_share: float, proxy: float, label_gap: float, noise_a: float, noise_b: float, seed: int
) -> Deliveries:
    """The recorded deliveries. Lateness: distance, rain, weight and the hour, with B's roads
    weighing distance less and the hour more, plus the recorded gap for B; then each group's
    share of labels flipped."""
    rng = np.random.default_rng((seed, 22))
    group = (rng.random(rows) < group_share).astype(np.int64)
    distance = rng.uniform(1, 30, rows)
    parcel = rng.lognormal(1.0, 0.6, rows)
    hour = rng.uniform(8, 20, rows)
    rain = (rng.random(rows) < 0.3).astype(np.float64)
    own = np.where(group == 1, rng.choice(OWN_DISTRICTS_B, rows), rng.integers(0, OWN_DISTRICTS_B[0], rows))
    district = np.where(rng.random(rows) < proxy, own, rng.integers(0, DISTRICTS, rows))
    b = group == 1
    log_odds = (
        -0.6
        + np.where(b, 0.03, 0.14) * (distance - 15)
        + 0.9 * rain
        + 0.08 * (parcel - 3)
        + np.where(b, 0.3, 0.02) * (hour - 14)
        + label_gap * group
    )
    late = rng.random(rows) < 1 / (1 + np.exp(-log_odds))
    late ^= rng.random(rows) < np.where(b, noise_b, noise_a)
    x = np.concatenate(
        [np.stack([distance, parcel, hour, rain], 1), np.eye(DISTRICTS)[district], group[:, None]], 1
    ).astype(np.float32)
    return Deliveries(x, late.astype(np.int64), group)


@dataclass
class Prepared:
    """The deliveries as tensors: numbers standardized with the training rows' statistics."""

    x: torch.Tensor
    late: torch.Tensor
    group: torch.Tensor
    train: torch.Tensor
    val: torch.Tensor


def prepare(d: Deliveries, seed: int, device: torch.device) -> Prepared:
    train, val = split(len(d.late), seed, share=0.25)
    x = d.x.copy()
    mu, sd = x[train, :3].mean(0), x[train, :3].std(0) + 1e-6
    x[:, :3] = (x[:, :3] - mu) / sd
    as_tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return Prepared(as_tensor(x), as_tensor(d.late), as_tensor(d.group), as_tensor(train), as_tensor(val))


def reweighing(late: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Kamiran & Calders' weights: P(group) P(label) / P(group, label) for each row's cell, so
    that in the weighted rows lateness no longer depends on the group."""
    weights = torch.empty(len(late), dtype=torch.float32, device=late.device)
    for g in (0, 1):
        for y in (0, 1):
            cell = (group == g) & (late == y)
            if cell.any():
                expected = (group == g).float().mean() * (late == y).float().mean()
                weights[cell] = expected / cell.float().mean()
    return weights
