"""Chapter 20's scenes: 64×64 images like chapter 9's (striped, noisy backgrounds; circles,
squares and triangles, dark or bright), now with 1 to 4 objects each, their boxes known exactly,
some pairs placed touching, and clutter: strokes as bright or dark as the objects that are not
objects. Every scene comes from its own random stream (seed, split, index), so scene i is the
same however many are made."""

from __future__ import annotations

import math

import numpy as np
import torch

SIDE = 64
CLASSES = ("circle", "square", "triangle")
TRAIN, TEST = 0, 1
_GRID = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)  # (yy, xx)


def _shape(kind: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = _GRID
    if kind == 0:  # circle
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    if kind == 1:  # square, axis-aligned
        return (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    top = cy - r  # triangle pointing up: below two slanted edges, above the base
    return (yy <= cy + r * 0.8) & (yy - top >= 1.7 * np.abs(xx - cx))


def _box(inside: np.ndarray) -> list[float]:
    """The tightest box (x0, y0, x1, y1) around a mask, in pixel edges (x1 = last column + 1)."""
    ys, xs = np.nonzero(inside)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def _stroke(img: np.ndarray, rng: np.random.Generator, level: float) -> np.ndarray:
    """A thin straight stroke somewhere: clutter that is bright or dark like an object."""
    yy, xx = _GRID
    x0, y0 = rng.uniform(0, SIDE, 2)
    angle, length = rng.uniform(0, math.pi), rng.uniform(8, 20)
    dx, dy = math.cos(angle), math.sin(angle)
    along = (xx - x0) * dx + (yy - y0) * dy
    across = np.abs(-(xx - x0) * dy + (yy - y0) * dx)
    return np.where((across <= 0.8) & (along >= 0) & (along <= length), level, img)


def scene(key: tuple, clutter: int, touching: float, noise: float = 0.1):
    """(image (64, 64) float32, boxes (n, 4), labels (n,)) from the random stream `key`."""
    rng = np.random.default_rng(key)
    yy, xx = _GRID
    angle, freq = rng.uniform(0, math.pi), rng.uniform(0.15, 0.6)
    img = 0.5 + 0.15 * np.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)) + rng.uniform(0, 6))
    for _ in range(clutter):
        img = _stroke(img, rng, rng.choice([rng.uniform(0.0, 0.2), rng.uniform(0.8, 1.0)]))
    taken = np.zeros((SIDE, SIDE), bool)
    boxes, labels = [], []
    for i in range(int(rng.integers(1, 5))):
        kind, r = int(rng.integers(0, 3)), rng.uniform(5, 11)
        for _retry in range(30):
            if i > 0 and rng.random() < touching:  # beside the last object, a pixel or two apart
                side = rng.uniform(0, 2 * math.pi)
                last = boxes[-1]
                lcx, lcy = (last[0] + last[2]) / 2, (last[1] + last[3]) / 2
                reach = (last[2] - last[0]) / 2 + r + rng.uniform(0.5, 2.5)
                cx, cy = lcx + reach * math.cos(side), lcy + reach * math.sin(side)
            else:
                cx, cy = rng.uniform(r, SIDE - r), rng.uniform(r, SIDE - r)
            inside = _shape(kind, cx, cy, r)
            if inside.sum() >= 20 and not (inside & taken).any() and _within(inside):
                break
        else:
            continue
        level = rng.choice([rng.uniform(0.0, 0.2), rng.uniform(0.8, 1.0)])
        texture = 0.08 * np.sin(rng.uniform(0.5, 1.2) * (xx + yy))
        img = np.where(inside, level + texture, img)
        taken |= inside
        boxes.append(_box(inside))
        labels.append(kind)
    img = (img + rng.normal(0, noise, img.shape)).astype(np.float32)
    return img, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def _within(inside: np.ndarray) -> bool:
    """The whole shape on the image: none of it cut off by an edge."""
    return not (inside[0].any() or inside[-1].any() or inside[:, 0].any() or inside[:, -1].any())


class DrawnScenes:
    """A seed's n training scenes, each made the first time a batch draws it. Every scene is
    seeded by its own index, so these are the very scenes `scenes` makes up front; a run's
    first step (its first number on the page) waits for its batch's scenes, not for all of
    them (800 take ~0.4 s)."""

    def __init__(self, n: int, seed: int, split: int, clutter: int, touching: float):
        self.n, self.seed, self.split, self.clutter, self.touching = n, seed, split, clutter, touching
        self._made: dict[int, tuple] = {}

    def __len__(self) -> int:
        return self.n

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, list, list]:
        """(images (B, 1, 64, 64), [boxes (k, 4)], [labels (k,)]) of the scenes at `index`."""
        made = [self._scene(int(i)) for i in index]
        return torch.stack([m[0] for m in made]), [m[1] for m in made], [m[2] for m in made]

    def _scene(self, i: int) -> tuple:
        if i not in self._made:
            img, boxes, labels = scene((self.seed, self.split, i), self.clutter, self.touching)
            self._made[i] = (torch.from_numpy(img)[None], torch.from_numpy(boxes), torch.from_numpy(labels))
        return self._made[i]


def scenes(n: int, seed: int, split: int, clutter: int, touching: float):
    """(images (n, 1, 64, 64), [boxes (k, 4)], [labels (k,)])."""
    made = [scene((seed, split, i), clutter, touching) for i in range(n)]
    images = torch.from_numpy(np.stack([m[0] for m in made])).unsqueeze(1)
    return images, [torch.from_numpy(m[1]) for m in made], [torch.from_numpy(m[2]) for m in made]
