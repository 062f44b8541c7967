"""Chapter 16 — GANs.

Two experiments. A GAN on 2-D points, in the spirit of GAN Lab: the target (a ring of eight
Gaussians, two moons, a spiral), the generated points, the discriminator's verdict over the
whole plane, and the direction the generator's loss pushes each generated point, live. Three
losses side by side in what they teach: the original minimax loss (which saturates), the
non-saturating one, and WGAN-GP. On the ring, a count of the modes the generator covers shows
mode collapse as it happens.

And a small DCGAN on the 28×28 digits: a grid of samples from fixed noise, live, with the
same loss and gradient views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from sklearn.datasets import make_moons
from torch import nn
from torch.nn import functional as F

from labs.core import budget, data
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy

PREFERS_GPU = False  # the 2-D nets are tiny: launch overhead would dominate on a GPU
TARGETS = ("ring", "moons", "spiral")
LOSSES = {
    "minimax": "minimax (saturating)",
    "non_saturating": "non-saturating",
    "wgan_gp": "WGAN-GP",
}
RING_MODES, RING_RADIUS, RING_STD = 8, 2.0, 0.05
SHOWN = 512  # generated and target points drawn
ARROWS = 64  # generated points that carry their gradient arrow
# The discriminator's field: GRID × GRID points over the plot, drawn smoothed (as the playground's
# boundary). Scored with every snapshot, up to 20 a second: 40 × 40 costs a 128-wide D ~0.7 ms on
# a CPU core, 48 × 48 1.0 (a snapshot in a run 3.2 vs 3.7-4.1 ms), 64 × 64 1.7.
GRID = 40
FIELD_PIECE = 2048  # grid points scored at once
# The plane is this chapter's lesson, and its frames between snapshots cost ~0.1% of a run, not
# the ~1.5% labs/core/frames.py allows them: its snapshots may take 8% of the run within the same
# tenth (`python -m bench.drawing gans`). At the usual 6% the plane redrew ~10 times a second beside
# a browser on a 2-core machine, whose drawing slowed the worker's every step and snapshot by half.
PLANE_SHARE = 0.08
EXTENT = 3.0


@dataclass(frozen=True)
class Config:
    target: str = knob("ring", "Target", "What the generator must learn to imitate.", choices=TARGETS)
    loss: str = knob(
        "non_saturating",
        "Loss",
        "Minimax: G minimizes log(1 − D(G(z))); non-saturating: G maximizes log D(G(z)); "
        "WGAN-GP: a critic's score with a gradient penalty.",
        choices=tuple(LOSSES),
        labels=LOSSES,
    )
    d_steps: int = knob(1, "D steps per G step", "How far the discriminator runs ahead.", lo=1, hi=10, step=1)
    d_lr: float = knob(1e-3, "D learning rate", "Adam, β₁ = 0.5.", lo=1e-5, hi=0.1, log=True)
    g_lr: float = knob(1e-3, "G learning rate", "Adam, β₁ = 0.5.", lo=1e-5, hi=0.1, log=True)
    d_width: int = knob(
        128, "D width", "Hidden units per layer of the discriminator: its strength.", lo=8, hi=512, step=8
    )
    g_width: int = knob(128, "G width", "Hidden units per layer of the generator.", lo=8, hi=512, step=8)
    noise_dim: int = knob(4, "Noise dimensions", "Of the Gaussian noise z fed to G.", lo=1, hi=16, step=1)
    batch_size: int = knob(256, "Batch size", "Real and generated points per step.", lo=16, hi=2048, step=16)
    steps: int = knob(3000, "Steps", "Generator steps.", lo=50, hi=50000, step=50)
    seed: int = knob(0, "Seed", "Same seed, same run.", lo=0, hi=9999, step=1)


def mlp(n_in: int, width: int, n_out: int, act: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, width), act(), nn.Linear(width, width), act(), nn.Linear(width, n_out)
    )


def generator(cfg: Config) -> nn.Module:
    return mlp(cfg.noise_dim, cfg.g_width, 2, nn.ReLU)


def discriminator(cfg: Config) -> nn.Module:
    """Logits (or, for WGAN-GP, an unbounded critic score) for each 2-D point."""
    return mlp(2, cfg.d_width, 1, lambda: nn.LeakyReLU(0.2))


# ---------------------------------------------------------------- targets


@lru_cache(maxsize=1)
def ring_centres() -> torch.Tensor:
    """The eight modes' centres (one tensor, made once: read it, do not change it)."""
    angles = torch.arange(RING_MODES) * (2 * math.pi / RING_MODES)
    return RING_RADIUS * torch.stack([torch.cos(angles), torch.sin(angles)], 1)


def sample_target(name: str, n: int, g: torch.Generator) -> torch.Tensor:
    """n points of the target distribution, within about [-2.5, 2.5]²."""
    if name == "ring":
        centres = ring_centres()[torch.randint(0, RING_MODES, (n,), generator=g)]
        return centres + RING_STD * torch.randn(n, 2, generator=g)
    if name == "moons":
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        X, _ = make_moons(n, noise=0.05, random_state=seed)
        return torch.tensor((X - [0.5, 0.25]) * 1.6, dtype=torch.float32)
    if name == "spiral":
        t = torch.rand(n, generator=g) * 3 * math.pi + 0.5
        r = t / (3 * math.pi + 0.5) * 2.2
        xy = torch.stack([r * torch.cos(t), r * torch.sin(t)], 1)
        return xy + 0.04 * torch.randn(n, 2, generator=g)
    raise ValueError(f"unknown target {name!r}; choose one of {TARGETS}")


def modes_covered(points: torch.Tensor) -> tuple[int, float]:
    """On the ring: how many of the 8 modes get at least a quarter of their fair share of the
    points within 3σ, and the share of points that lie within 3σ of any mode (quality)."""
    dist = torch.cdist(points.float(), ring_centres())
    nearest, mode = dist.min(1)
    close = nearest < 3 * RING_STD
    counts = torch.bincount(mode[close], minlength=RING_MODES)
    fair = len(points) / RING_MODES
    return int((counts >= fair / 4).sum()), float(close.float().mean())


# ---------------------------------------------------------------- losses


def d_loss(kind: str, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if kind == "wgan_gp":
        return D(fake).mean() - D(real).mean() + 10 * gradient_penalty(D, real, fake)
    ones, zeros = torch.ones(len(real), 1, device=real.device), torch.zeros(len(fake), 1, device=real.device)
    return F.binary_cross_entropy_with_logits(D(real), ones) + F.binary_cross_entropy_with_logits(
        D(fake), zeros
    )


def g_loss(kind: str, D: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    score = D(fake)
    if kind == "wgan_gp":
        return -score.mean()
    if kind == "minimax":  # minimize log(1 − D(G(z))) = −softplus(logit): flat where D is sure
        return -F.softplus(score).mean()
    return F.softplus(-score).mean()  # non-saturating: minimize −log D(G(z))


def gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al., 2017): the critic's gradient norm held near 1 between the two sets."""
    mix = torch.rand(len(real), *[1] * (real.dim() - 1), device=real.device)
    x = (mix * real + (1 - mix) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def adam(params, lr: float, kind: str) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.9 if kind == "wgan_gp" else 0.999))


def grad_norm(model: nn.Module) -> float:
    return float(
        torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in model.parameters() if p.grad is not None))
    )


# ---------------------------------------------------------------- the 2-D GAN


def cost(cfg: Config) -> budget.Cost:
    """Both nets, D steps per G step; WGAN-GP's penalty runs D's backward twice more."""
    pg, fg, kg = budget.mlp([cfg.noise_dim, cfg.g_width, cfg.g_width, 2], cfg.batch_size)
    pd, fd, kd = budget.mlp([2, cfg.d_width, cfg.d_width, 1], 2 * cfg.batch_size)
    d_factor = cfg.d_steps * (3 if cfg.loss == "wgan_gp" else 1)
    return budget.Cost(
        params=pg + pd,
        activations=kg + kd,
        steps=cfg.steps,
        step_flops=fg + fd * (d_factor + 1),
        step_ops=40 + 60 * d_factor,
        evaluation=GRID * GRID * cfg.d_width * 2,
    )


def train(cfg: Config, device: torch.device):
    """Alternate: `d_steps` discriminator steps on fresh real and generated points, one
    generator step. Snapshots draw D's field, the points and G's gradient on them."""
    check(cfg)
    g = seed_everything(cfg.seed)
    G, D = generator(cfg).to(device), discriminator(cfg).to(device)
    opt_g, opt_d = adam(G.parameters(), cfg.g_lr, cfg.loss), adam(D.parameters(), cfg.d_lr, cfg.loss)
    fixed_z = torch.randn(SHOWN, cfg.noise_dim, generator=g).to(device)
    shown_target = to_numpy(sample_target(cfg.target, SHOWN, g))
    # time alone spaces the snapshots (up to 20 a second, within PLANE_SHARE): with one every
    # tenth step at most, a snapshot due after 67 ms waited for a step 70-100 ms on
    cadence = Cadence(cfg.steps, max_snaps=cfg.steps, min_seconds=1 / 20, share=PLANE_SHARE)
    view = {"target": shown_target, "grid": np.linspace(-EXTENT, EXTENT, GRID, dtype=np.float32)}
    step, watch = 0, LossWatch()
    for step in steps(cfg.steps):
        for _ in range(cfg.d_steps):
            real = sample_target(cfg.target, cfg.batch_size, g).to(device)
            with torch.no_grad():
                fake = G(torch.randn(cfg.batch_size, cfg.noise_dim, generator=g).to(device))
            loss_d = d_loss(cfg.loss, D, real, fake)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        d_norm = grad_norm(D)  # before G's step, whose backward passes through D
        loss_g = g_loss(cfg.loss, D, G(torch.randn(cfg.batch_size, cfg.noise_dim, generator=g).to(device)))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        log(step, d_loss=loss_d, g_loss=loss_g)
        if cadence.due(step):
            watch.check(step, D_loss=loss_d, G_loss=loss_g)
            metrics, picture = look(cfg, G, D, fixed_z)
            metrics.update(d_grad_norm=d_norm, g_grad_norm=grad_norm(G))
            yield Snapshot(step, cfg.steps, metrics, view={**view, **picture})
            view = {}  # the target and grid are sent once
    yield Snapshot(step, cfg.steps, final=True, state_dict={"G": cpu_state_dict(G), "D": cpu_state_dict(D)})


def look(cfg: Config, G: nn.Module, D: nn.Module, fixed_z: torch.Tensor) -> tuple[dict, dict]:
    """The picture of one moment: D over the plane, the generated points from fixed noise, the
    direction G's loss pushes some of them, and (on the ring) the modes covered."""
    with torch.no_grad():
        # in pieces (one at 40 × 40): on a CPU one pass of 4,096 points through a 128-wide D
        # took twice as long as two of 2,048 (2 MB of fresh activations a layer): a wide GRID
        plane = _plane().to(fixed_z.device)
        score = torch.cat([D(piece) for piece in plane.split(FIELD_PIECE)])
        field = score.reshape(GRID, GRID)
        field = field if cfg.loss == "wgan_gp" else torch.sigmoid(field)
        points = G(fixed_z)
    # G's loss differentiated at the arrows' points alone: the others carry no arrow
    arrows = points[:ARROWS].clone().requires_grad_(True)
    (push,) = torch.autograd.grad(g_loss(cfg.loss, D, arrows) * ARROWS, arrows)
    metrics = {}
    if cfg.target == "ring":
        covered, quality = modes_covered(points.cpu())
        metrics.update(modes_covered=covered, on_a_mode=quality)
    picture = {
        "field": to_numpy(field),
        "generated": to_numpy(points),
        "push": -to_numpy(push),  # gradient descent moves each point against its gradient
    }
    return metrics, picture


@lru_cache(maxsize=1)
def _plane() -> torch.Tensor:
    """The GRID × GRID points D's field is scored on, row by row from the bottom (read-only).
    Kept on the CPU: a GPU tensor kept here would hold GPU memory past the run."""
    axis = torch.linspace(-EXTENT, EXTENT, GRID)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], 1)


# ---------------------------------------------------------------- DCGAN on the digits


@dataclass(frozen=True)
class DigitsConfig:
    noise_dim: int = knob(32, "Noise dimensions", "Of the Gaussian noise z.", lo=2, hi=128, step=2)
    width: int = knob(32, "Width", "Channels of the nets' first conv layers.", lo=8, hi=128, step=8)
    loss: str = knob("non_saturating", "Loss", "As in the 2-D GAN.", choices=tuple(LOSSES), labels=LOSSES)
    learning_rate: float = knob(
        1e-3, "Learning rate", "Adam, β₁ = 0.5, for both nets.", lo=1e-5, hi=0.01, log=True
    )
    batch_size: int = knob(64, "Batch size", "Real and generated images per step.", lo=16, hi=256, step=16)
    steps: int = knob(500, "Steps", "Generator steps.", lo=50, hi=20000, step=50)
    seed: int = knob(0, "Seed", "Same seed, same run.", lo=0, hi=9999, step=1)


class DigitGenerator(nn.Module):
    """z → 2w·7·7 → (transposed conv) w·14·14 → 1·28·28 in [0, 1]."""

    def __init__(self, cfg: DigitsConfig):
        super().__init__()
        w = cfg.width
        self.project = nn.Sequential(
            nn.Linear(cfg.noise_dim, 2 * w * 49), nn.BatchNorm1d(2 * w * 49), nn.ReLU()
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Sigmoid(),
        )  # fmt: skip
        self.w = w

    def forward(self, z):
        return self.up(self.project(z).view(-1, 2 * self.w, 7, 7))


class DigitDiscriminator(nn.Module):
    def __init__(self, cfg: DigitsConfig):
        super().__init__()
        w = cfg.width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * w * 49, 1),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)


def digits_cost(cfg: DigitsConfig) -> budget.Cost:
    w, b = cfg.width, cfg.batch_size
    g_flops = 2 * (cfg.noise_dim * 2 * w * 49 + 16 * 2 * w * w * 196 + 16 * w * 784) * b
    d_flops = 2 * (16 * w * 196 + 16 * 2 * w * w * 49 + 2 * w * 49) * b
    params = cfg.noise_dim * 2 * w * 49 + 16 * 2 * w * w + 16 * w + 16 * w + 32 * w * w + 98 * w
    d_factor = 3 if cfg.loss == "wgan_gp" else 1
    return budget.Cost(
        params=params,
        activations=(4 * w * 49 + 2 * w * 196 + 784) * b * 3,
        steps=cfg.steps,
        step_flops=3 * (g_flops * 2 + d_flops * 2 * d_factor),
        step_ops=120,
        data=5000 * 784,
        # "dense": 32-64 channels wide, these convolutions run near the matmul rate (bench.budget:
        # estimated 1.5× the measured step at the dense rate, 5× at the small-convolution rate)
    )


def train_digits(cfg: DigitsConfig, device: torch.device):
    """One D step and one G step per step on the 28×28 digits; a sample grid from fixed noise."""
    check(cfg)
    g = seed_everything(cfg.seed)
    X = data.mnist_subset()[0].to(device)
    G, D = DigitGenerator(cfg).to(device), DigitDiscriminator(cfg).to(device)
    opt_g, opt_d = (
        adam(G.parameters(), cfg.learning_rate, cfg.loss),
        adam(D.parameters(), cfg.learning_rate, cfg.loss),
    )
    fixed_z = torch.randn(32, cfg.noise_dim, generator=g).to(device)
    cadence = Cadence(cfg.steps, max_snaps=60, min_seconds=0.3)
    notes = [f"{len(X):,} real digits (the 28×28 set that ships with the lab)."]
    step, watch = 0, LossWatch()
    for step in steps(cfg.steps):
        real = X[torch.randint(0, len(X), (cfg.batch_size,), generator=g).to(device)]
        z = torch.randn(cfg.batch_size, cfg.noise_dim, generator=g).to(device)
        fake = G(z)
        loss_d = d_loss(cfg.loss, D, real, fake.detach())
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        d_norm = grad_norm(D)
        opt_d.step()
        loss_g = g_loss(cfg.loss, D, fake)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        log(step, d_loss=loss_d, g_loss=loss_g)
        if cadence.due(step):
            watch.check(step, D_loss=loss_d, G_loss=loss_g)
            G.eval()
            with torch.no_grad():
                samples = to_numpy(G(fixed_z)[:, 0])
            G.train()
            metrics = {"d_grad_norm": d_norm, "g_grad_norm": grad_norm(G)}
            yield Snapshot(step, cfg.steps, metrics, view={"samples": samples}, notes=notes)
    yield Snapshot(step, cfg.steps, final=True, state_dict={"G": cpu_state_dict(G), "D": cpu_state_dict(D)})


# ---------------------------------------------------------------- questions


def late_coverage(view) -> float:
    """Modes covered, averaged over the last quarter of the run's snapshots: a collapsing GAN
    wanders from mode to mode, so one moment can flatter it."""
    counts = [r["modes_covered"] for r in view.history if "modes_covered" in r]
    late = counts[len(counts) * 3 // 4 :] or counts[-1:] or [0]
    return sum(late) / len(late)


def _all_eight(view) -> tuple[str, str]:
    covered = late_coverage(view)
    answer = "all 8" if covered >= RING_MODES - 0.5 else "fewer"
    return answer, f"Over the last quarter of the run it covered {covered:.1f} of the 8 modes on average."


QUESTIONS = [
    Question(
        "The minimax loss, with a discriminator that takes 5 steps per generator step at a "
        "learning rate of 0.005, for 1,500 steps: will the generator keep all 8 modes of the ring "
        "covered to the end?",
        ("all 8", "fewer"),
        {"target": "ring", "loss": "minimax", "d_steps": 5, "d_lr": 0.005, "steps": 1500},
        _all_eight,
        "A discriminator that is sure of every fake makes log(1 − D(G(z))) flat: the generator's "
        "gradient vanishes, except towards the few places D is still unsure, and the generated "
        "points pile up on a mode or two.",
    ),
    Question(
        "The default instead: the non-saturating loss, one D step per G step, both learning "
        "rates 0.001. All 8 modes to the end?",
        ("all 8", "fewer"),
        {"target": "ring", "loss": "non_saturating", "d_steps": 1, "d_lr": 0.001, "g_lr": 0.001},
        _all_eight,
        "The non-saturating loss gives a generated point its steepest gradient exactly where D is "
        "surest it is fake, and a discriminator that does not run ahead leaves every mode a slope "
        "to climb.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
DIGITS = Experiment(DigitsConfig, train_digits, digits_cost, True)
# by part, in the order of the page's Train buttons (labs/core/contract.py)
EXPERIMENTS = {"toy": EXPERIMENT, "digits": DIGITS}
