"""Chapter 9 — Segmentation.

A small U-Net labels every pixel of generated 64×64 images: circles, squares and triangles on
textured, noisy backgrounds. Side by side under one seed, the same net without its skip
connections: its decoder must rebuild the edges from the 16×16 bottleneck alone. The learner
sees predicted masks beside the truth for fixed test images, IoU per class and on a thin band
around the edges over time, the per-pixel confusion between classes, and, after training,
Integrated Gradients for the class of one chosen pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from figures.variants import metric
from labs.core import attribution, budget
from labs.core.compare import load_variants, side_by_side
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy

PREFERS_GPU = True
CLASSES = ("background", "circle", "square", "triangle")
SIDE = 64
VARIANTS = {"unet": "U-Net", "no_skips": "no skips"}
SHOWN = 4  # test images whose masks are drawn live
BAND = 2  # pixels either side of an edge that count as "the boundary"
TEST_IMAGES = 64  # enough for IoU to a few hundredths; each snapshot measures them all


@dataclass(frozen=True)
class Config:
    variants: tuple = knob(
        tuple(VARIANTS),
        "Compare",
        "The same encoder and decoder, with and without skip connections.",
        choices=tuple(VARIANTS),
        multi=True,
        labels=VARIANTS,
    )
    channels: int = knob(
        8, "Channels", "Of the first stage (then 2×, 4×, 4× as the maps shrink).", lo=4, hi=32, step=4
    )
    noise: float = knob(0.1, "Noise", "Std of the pixel noise over the textures.", lo=0.0, hi=0.5, step=0.05)
    train_images: int = knob(800, "Training images", "Generated once per seed.", lo=100, hi=5000, step=100)
    dice: float = knob(
        1.0,
        "Dice weight",
        "Weight of the soft Dice term beside cross-entropy: it counts each class's overlap, so "
        "the small classes matter as much as the background. 0 = cross-entropy alone.",
        lo=0.0,
        hi=3.0,
        step=0.25,
    )
    learning_rate: float = knob(5e-3, "Learning rate", "Adam's step size.", lo=1e-5, hi=0.1, log=True)
    batch_size: int = knob(8, "Batch size", "Images per step.", lo=2, hi=64, step=2)
    steps: int = knob(260, "Steps", "For each net.", lo=20, hi=10000, step=20)
    seed: int = knob(0, "Seed", "Same seed, same images, same run.", lo=0, hi=9999, step=1)


# ---------------------------------------------------------------- the images


def shape_image(noise: float, key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """One image (64, 64) and its mask of class indices, from its own random stream `key`: a
    striped background, one or two shapes apart from each other, each dark or bright with its
    own stripes, and pixel noise over all. Brightness says "object"; only the outline says which."""
    rng = np.random.default_rng(key)
    yy, xx = _GRID
    mask = np.zeros((SIDE, SIDE), np.int64)
    angle, freq = rng.uniform(0, math.pi), rng.uniform(0.15, 0.6)
    img = 0.5 + 0.15 * np.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)) + rng.uniform(0, 6))
    for _ in range(rng.integers(1, 3)):
        kind = int(rng.integers(1, 4))
        inside = _shape(kind, xx, yy, rng)
        for _retry in range(20):  # shapes apart, so each keeps its outline
            if not (inside & (mask > 0)).any():
                break
            inside = _shape(kind, xx, yy, rng)
        else:
            continue
        level = rng.choice([rng.uniform(0.0, 0.2), rng.uniform(0.8, 1.0)])
        texture = 0.08 * np.sin(rng.uniform(0.5, 1.2) * (xx + yy))
        img = np.where(inside, level + texture, img)
        mask[inside] = kind
    return (img + rng.normal(0, noise, img.shape)).astype(np.float32), mask


_GRID = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
TRAIN, TEST = 0, 1  # the two splits' random streams


def shapes(n: int, noise: float, seed: int, split: int = TRAIN) -> tuple[torch.Tensor, torch.Tensor]:
    """n images (n, 1, 64, 64) and masks (n, 64, 64): image i of a split is the same however
    many are made."""
    pairs = [shape_image(noise, (seed, split, i)) for i in range(n)]
    images = torch.from_numpy(np.stack([p[0] for p in pairs])).unsqueeze(1)
    return images, torch.from_numpy(np.stack([p[1] for p in pairs]))


class TrainingImages:
    """The training set, each image made the first time a batch draws it: the first step waits
    for 8 images, not 800 (~0.3 ms each), and image i is the same whichever step draws it."""

    def __init__(self, n: int, noise: float, seed: int):
        self.noise, self.seed = noise, seed
        self.X = torch.zeros(n, 1, SIDE, SIDE)
        self.M = torch.zeros(n, SIDE, SIDE, dtype=torch.long)
        self.made = torch.zeros(n, dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.X)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for i in index[~self.made[index]].unique().tolist():
            image, mask = shape_image(self.noise, (self.seed, TRAIN, i))
            self.X[i, 0], self.M[i] = torch.from_numpy(image), torch.from_numpy(mask)
            self.made[i] = True
        return self.X[index], self.M[index]

    def class_weights(self) -> torch.Tensor:
        """From the first 64 images (made now): the share of each class hardly varies."""
        return class_weights(self.batch(torch.arange(min(64, len(self))))[1])


def _shape(kind: int, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cx, cy, r = rng.uniform(16, 48), rng.uniform(16, 48), rng.uniform(9, 17)
    if kind == 1:  # circle
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    if kind == 2:  # square, axis-aligned
        return (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    # triangle pointing up: below two slanted edges, above the base
    top = cy - r
    return (yy <= cy + r * 0.8) & (yy - top >= 1.7 * np.abs(xx - cx))


@lru_cache(maxsize=4)
def dataset(train_images: int, noise: float, seed: int) -> tuple[TrainingImages, torch.Tensor, torch.Tensor]:
    """(training images, X_test, M_test), shared by the nets of one run (and the next run)."""
    return TrainingImages(train_images, noise, seed), *shapes(TEST_IMAGES, noise, seed, TEST)


def boundary_band(masks: torch.Tensor, width: int = BAND) -> torch.Tensor:
    """Pixels within `width` of an edge between two classes (n, 64, 64) bool: where a skip
    connection's fine detail matters most."""
    m = masks.float().unsqueeze(1)
    k = 2 * width + 1
    hi = F.max_pool2d(m, k, stride=1, padding=width)
    lo = -F.max_pool2d(-m, k, stride=1, padding=width)
    return (hi != lo)[:, 0]


# ---------------------------------------------------------------- the nets


def conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


def widths_of(channels: int) -> tuple[int, ...]:
    """Channels of the four encoder stages, at 64, 32, 16 and 8 pixels."""
    return (channels, 2 * channels, 4 * channels, 4 * channels)


class UNet(nn.Module):
    """Encoder 64 → 32 → 16 → 8 → 4, decoder back up to 64. With skips, each decoder stage also
    reads the encoder's maps of its size (Ronneberger et al., 2015); without, only what came up
    from the 4×4 bottleneck, where pooling has thrown away where exactly each edge was."""

    def __init__(self, channels: int, skips: bool = True, n_classes: int = len(CLASSES)):
        super().__init__()
        widths = widths_of(channels)
        self.skips = skips
        self.down = nn.ModuleList(conv(a, b) for a, b in zip((1, *widths), widths))
        # two convs at 4×4, where they are cheap: the context that tells a square from a circle
        self.mid = nn.Sequential(conv(widths[-1], widths[-1]), conv(widths[-1], widths[-1]))
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(a, b, 2, stride=2) for a, b in zip((widths[-1], *widths[:0:-1]), widths[::-1])
        )
        self.dec = nn.ModuleList(conv(2 * w if skips else w, w) for w in widths[::-1])
        self.out = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, x):  # (N, 1, 64, 64) -> logits (N, classes, 64, 64)
        kept = []
        for stage in self.down:
            x = stage(x)
            kept.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        for up, dec, skip in zip(self.ups, self.dec, reversed(kept)):
            x = up(x)
            x = dec(torch.cat([x, skip], 1) if self.skips else x)
        return self.out(x)


def build(variant: str, cfg: Config) -> UNet:
    return UNet(cfg.channels, skips=variant == "unet")


def cost(cfg: Config) -> budget.Cost:
    """Multiply-adds counted stage by stage (3×3 convs, 2×2 up-convs, the 1×1 head)."""
    w = widths_of(cfg.channels)
    sides = [SIDE >> i for i in range(len(w))]  # 64, 32, 16, 8
    costs = []
    for v in cfg.variants:
        k = 2 if v == "unet" else 1  # a skip doubles the decoder conv's input
        encoder = sum(9 * s * s * c_in * c for s, c_in, c in zip(sides, (1, *w), w))
        middle = 2 * 9 * (sides[-1] // 2) ** 2 * w[-1] ** 2
        ups = sum(s * s * c_in * c for s, c_in, c in zip(sides[::-1], (w[-1], *w[:0:-1]), w[::-1]))
        decoder = sum(9 * s * s * k * c * c for s, c in zip(sides, w))
        macs = encoder + middle + ups + decoder + SIDE**2 * w[0] * len(CLASSES)
        kept = 3 * sum(s * s * c * (2 + k) for s, c in zip(sides, w)) * cfg.batch_size
        params = 9 * (sum(a * b for a, b in zip((1, *w), w)) + sum(k * c * c for c in w)) + 2 * 9 * w[-1] ** 2
        costs.append(
            budget.Cost(
                params,
                kept,
                cfg.steps,
                3 * 2 * macs * cfg.batch_size,
                110,
                data=(cfg.train_images + TEST_IMAGES) * SIDE**2 * 3,
                evaluation=50 * 3 * sum(s * s * c * (1 + k) for s, c in zip(sides, w)),
                kind="conv",  # 8-32-channel convolutions: their own measured rate
            )
        )
    return budget.total(costs)


# ---------------------------------------------------------------- training


def train(cfg: Config, device: torch.device):
    check(cfg)
    yield from side_by_side({VARIANTS[v]: train_one(v, cfg, device) for v in cfg.variants}, device)


def class_weights(masks: torch.Tensor) -> torch.Tensor:
    """Cross-entropy weights ∝ 1/√(class frequency), mean 1: the background (~85% of pixels)
    counts less, without letting a rare class's few pixels shake every step."""
    counts = torch.bincount(masks.flatten(), minlength=len(CLASSES)).float().clamp(min=1)
    w = (counts.sum() / counts).sqrt()
    return w / w.mean()


def soft_dice_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """1 − mean over classes of 2|P∩T| / (|P| + |T|), with P the softmax: each class counts
    the same, however few pixels it has (Milletari et al., 2016)."""
    p = logits.softmax(1)
    t = F.one_hot(masks, len(CLASSES)).permute(0, 3, 1, 2).to(p.dtype)
    overlap = (p * t).sum((0, 2, 3))
    return 1 - ((2 * overlap + 1) / (p.sum((0, 2, 3)) + t.sum((0, 2, 3)) + 1)).mean()


def train_one(variant: str, cfg: Config, device: torch.device):
    """Adam on per-pixel cross-entropy plus soft Dice; snapshots with IoU per class, boundary
    IoU, the confusion of classes per pixel and the masks of the shown test images."""
    g = seed_everything(cfg.seed)
    train_set, X_test, M_test = dataset(cfg.train_images, cfg.noise, cfg.seed)
    # channels last (NHWC): the CPU's convolutions run ~25% faster on it (36 -> 27 ms a U-Net
    # step here), and a GPU's tensor cores want it too
    X_test, M_test = X_test.to(device, memory_format=torch.channels_last), M_test.to(device)
    band = boundary_band(M_test)
    weights = train_set.class_weights().to(device)
    model = build(variant, cfg).to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    # the step size falls to 0 along a cosine: the last masks are settled, not one noisy step's
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    cadence = Cadence(cfg.steps, max_snaps=200, min_seconds=0.25)  # time decides: ~1/s
    view = {"images": to_numpy(X_test[:SHOWN, 0]), "truth": M_test[:SHOWN].cpu().numpy()}
    notes = [f"{len(train_set):,} generated training images, {len(X_test)} test images (64×64)."]
    step = 0
    watch = LossWatch()
    for step in steps(cfg.steps):
        X, M = train_set.batch(torch.randint(0, len(train_set), (cfg.batch_size,), generator=g))
        X, M = X.to(device, memory_format=torch.channels_last), M.to(device)
        logits = model(X)
        ce = F.cross_entropy(logits, M, weight=weights)
        loss = ce + cfg.dice * soft_dice_loss(logits, M) if cfg.dice else ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        log(step, train_loss=loss)
        if cadence.due(step):
            watch.check(step, loss=loss)
            if step == 1:  # the first update only draws the shown masks: it comes at once
                metrics, picture = {}, {"masks": predict(model, X_test[:SHOWN]).cpu().numpy()}
            else:
                metrics, picture = evaluate(model, X_test, M_test, band)
            yield Snapshot(step, cfg.steps, metrics, view={**view, **picture}, notes=notes)
            view, notes = {}, []
    yield Snapshot(step, cfg.steps, final=True, state_dict=cpu_state_dict(model))


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    model.eval()
    pred = torch.cat([model(X[i : i + chunk]).argmax(1) for i in range(0, len(X), chunk)])
    model.train()
    return pred


def iou_per_class(pred: torch.Tensor, truth: torch.Tensor, where: torch.Tensor | None = None) -> list[float]:
    """Intersection over union of each class, over all pixels (or only those in `where`)."""
    if where is not None:
        pred, truth = pred[where], truth[where]
    out = []
    for k in range(len(CLASSES)):
        p, t = pred == k, truth == k
        union = (p | t).sum().item()
        out.append((p & t).sum().item() / union if union else math.nan)
    return out


def evaluate(model, X_test, M_test, band) -> tuple[dict, dict]:
    pred = predict(model, X_test)
    ious = iou_per_class(pred, M_test)
    edge = iou_per_class(pred, M_test, band)
    n = len(CLASSES)
    confusion = torch.bincount(M_test.flatten() * n + pred.flatten(), minlength=n * n).reshape(n, n)
    metrics = {f"IoU {c}": v for c, v in zip(CLASSES, ious)}
    metrics["mean IoU"] = float(np.nanmean(ious))
    metrics["boundary IoU"] = float(np.nanmean(edge))
    metrics["pixel accuracy"] = (pred == M_test).float().mean().item()
    return metrics, {"masks": pred[:SHOWN].cpu().numpy(), "confusion": confusion.cpu().numpy()}


# ---------------------------------------------------------------- after training: one pixel


def load(cfg: Config, state_dicts: dict[str, dict]) -> dict[str, UNet]:
    return load_variants(state_dicts, VARIANTS, lambda variant: build(variant, cfg))


def edge_pixel(mask: torch.Tensor) -> tuple[int, int]:
    """A pixel on an object's outline, where the two nets differ most: the last pixel of one
    object (of the lowest class there) straight right of its centre; the image's centre when
    it holds no object."""
    rows, cols = torch.nonzero(mask == mask[mask > 0].min(), as_tuple=True) if (mask > 0).any() else ((), ())
    if not len(rows):
        return SIDE // 2, SIDE // 2
    row = int(rows.float().mean().round())
    inside = cols[rows == row]
    return (row, int(inside.max())) if len(inside) else (int(rows[0]), int(cols[0]))


class OnePixel(nn.Module):
    """The class logits of one pixel, as a (N, classes) output Captum can attribute."""

    def __init__(self, model: nn.Module, row: int, col: int):
        super().__init__()
        self.model, self.row, self.col = model, row, col

    def forward(self, x):
        return self.model(x)[:, :, self.row, self.col]


NEAR = 5  # pixels either way: "the neighbourhood" of an explained pixel


def explain_pixel(model: nn.Module, image: torch.Tensor, row: int, col: int) -> dict:
    """Integrated Gradients of the predicted class's logit at one pixel, the class
    probabilities there, and the share of the evidence within NEAR pixels of it. The baseline
    is a flat grey at the image's mean brightness: no edges and no objects, where black would
    itself look like a dark shape."""
    pixel = OnePixel(model.eval(), row, col)
    with torch.no_grad():
        probs = F.softmax(pixel(image), dim=1)[0].numpy()
    target = int(probs.argmax())
    baseline = torch.full_like(image, image.mean().item())
    ig, delta = attribution.integrated_gradients(pixel, image, target, baseline, steps=32)
    return {
        "map": attribution.normalize_attribution(ig),
        "target": target,
        "probs": probs,
        "delta": delta,
        "near": evidence_near(ig[0], row, col),
    }


def evidence_near(attr: np.ndarray, row: int, col: int, radius: int = NEAR) -> float:
    """The share of |attribution| within `radius` pixels (a square) of (row, col)."""
    magnitude = np.abs(attr)
    near = magnitude[max(0, row - radius) : row + radius + 1, max(0, col - radius) : col + radius + 1]
    return float(near.sum() / max(magnitude.sum(), 1e-12))


# ---------------------------------------------------------------- questions


def _boundary(view, variant: str) -> float:
    return view.last(metric(VARIANTS[variant], "boundary IoU"), 0.0) or 0.0


def _who_wins_edges(view) -> tuple[str, str]:
    unet, plain = _boundary(view, "unet"), _boundary(view, "no_skips")
    answer = "the U-Net" if unet > plain else "the net without skips"
    return answer, f"Boundary IoU: U-Net {unet:.2f}, without skips {plain:.2f}."


QUESTIONS = [
    Question(
        "On a 2-pixel band around every edge, whose masks agree better with the truth: the "
        "U-Net's, or the same net's without skip connections?",
        ("the U-Net", "the net without skips"),
        {"variants": tuple(VARIANTS)},
        _who_wins_edges,
        "Pooling throws away where exactly an edge was; the skip hands the decoder the encoder's "
        "full-resolution maps, so it can put the edge back on the right pixel.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
