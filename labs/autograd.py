"""Chapter 1 — Tensors, autograd & gradient descent.

Fit a line or a polynomial to noisy points by gradient descent, written three ways: the
gradient derived by hand, the same gradient from autograd, and torch.optim doing the update.
All three take the same path (the lab checks it at every snapshot). The learner sees the fit,
the loss surface over two coefficients with the descent path on it, every coefficient's
gradient at every step, and the computation graph autograd recorded for the loss with the
gradient that flowed back along each edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from labs.autograd_graph import autograd_graph
from labs.core import budget, pacing
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot

PREFERS_GPU = False  # a handful of numbers: the CPU is the right place
TARGETS = {
    "line": ("0.8x − 0.3", lambda x: 0.8 * x - 0.3),
    "cubic": ("x³ − 0.5x", lambda x: x**3 - 0.5 * x),
    "sine": ("sin(πx)", lambda x: torch.sin(math.pi * x)),
}
METHODS = {"by_hand": "gradient by hand", "autograd": "autograd + manual update", "optim": "torch.optim.SGD"}
SURFACE = 41  # loss surface grid: SURFACE × SURFACE
MAX_ROWS = 2000  # per-step records sent with a snapshot are thinned to this many rows


@dataclass(frozen=True)
class Config:
    target: str = knob(
        "cubic",
        "Data from",
        "The curve the points scatter around.",
        choices=tuple(TARGETS),
        labels={k: v[0] for k, v in TARGETS.items()},
    )
    noise: float = knob(0.1, "Noise", "Standard deviation of the scatter.", lo=0.0, hi=1.0, step=0.05)
    points: int = knob(40, "Points", "How many (x, y) pairs.", lo=10, hi=200, step=10)
    degree: int = knob(3, "Polynomial degree", "1 fits a line: c₀ + c₁x.", lo=1, hi=9, step=1)
    method: str = knob(
        "by_hand", "Gradient", "Three ways to the same numbers.", choices=tuple(METHODS), labels=METHODS
    )
    learning_rate: float = knob(
        0.3, "Learning rate", "Step size; too large and it diverges.", lo=1e-3, hi=3.0, log=True
    )
    batch_size: int = knob(
        40,
        "Batch size",
        "Points per step: all of them is batch descent, 1 is stochastic.",
        lo=1,
        hi=200,
        step=1,
    )
    steps: int = knob(300, "Steps", "Gradient steps.", lo=10, hi=100_000, step=10)
    speed: str = pacing.speed_knob()
    seed: int = knob(0, "Seed", "Same seed, same points, same run.", lo=0, hi=9999, step=1)


def make_data(cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """x uniform in [-1, 1] (sorted, for drawing), y = target(x) + noise."""
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.sort(torch.rand(cfg.points, generator=g) * 2 - 1).values
    y = TARGETS[cfg.target][1](x) + cfg.noise * torch.randn(cfg.points, generator=g)
    return x, y


def features(x: torch.Tensor, degree: int) -> torch.Tensor:
    """Φ: one column per power of x, (N, degree + 1). The model is Φ · c."""
    return torch.stack([x**k for k in range(degree + 1)], dim=1)


def mse(phi: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return ((phi @ c - y) ** 2).mean()


def hand_gradient(phi: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """d/dc mean((Φc − y)²) = (2/N) Φᵀ(Φc − y), derived on paper."""
    return 2 / len(y) * phi.T @ (phi @ c - y)


def cost(cfg: Config) -> budget.Cost:
    """A handful of numbers; the run keeps every step's coefficients, gradient and loss."""
    k = cfg.degree + 1
    return pacing.paced(
        budget.Cost(
            params=k,
            activations=2 * min(cfg.batch_size, cfg.points) * k,
            steps=cfg.steps,
            step_flops=4 * cfg.points * k,
            step_ops=22,
            optimizer_states=0,
            data=(2 * cfg.steps + 1) * k + cfg.steps + cfg.points * k,
        ),
        cfg.speed,
    )


def train(cfg: Config, device: torch.device):
    """Gradient descent on the polynomial's coefficients, by the chosen method."""
    check(cfg)
    g = seed_everything(cfg.seed)
    x, y = make_data(cfg)
    phi = features(x, cfg.degree)
    c = torch.zeros(cfg.degree + 1)  # start every coefficient at 0
    if cfg.method != "by_hand":
        c.requires_grad_(True)
    opt = torch.optim.SGD([c], lr=cfg.learning_rate) if cfg.method == "optim" else None
    batch = min(cfg.batch_size, cfg.points)
    path = torch.zeros(cfg.steps + 1, cfg.degree + 1)  # path[i]: coefficients after step i
    grads = torch.zeros(cfg.steps, cfg.degree + 1)  # grads[i - 1]: the gradient step i used
    losses = torch.zeros(cfg.steps)  # losses[i - 1]: loss on all points after step i
    cadence = Cadence(cfg.steps, max_snaps=60, min_seconds=0.05)
    step = 0
    watch = LossWatch(limit=1e8)
    for step in steps(cfg.steps, pacing.per_second(cfg.speed)):  # ends early on Stop
        idx = torch.randperm(cfg.points, generator=g)[:batch]
        phi_b, y_b = phi[idx], y[idx]
        if cfg.method == "by_hand":
            grad = hand_gradient(phi_b, y_b, c)
            c = c - cfg.learning_rate * grad
        elif cfg.method == "autograd":
            mse(phi_b, y_b, c).backward()
            grad = c.grad.clone()
            with torch.no_grad():  # the update itself must not be recorded
                c -= cfg.learning_rate * c.grad
            c.grad = None
        else:
            opt.zero_grad()
            mse(phi_b, y_b, c).backward()
            grad = c.grad.clone()
            opt.step()
        path[step], grads[step - 1] = c.detach(), grad
        losses[step - 1] = loss = mse(phi, y, c.detach())
        log(step, loss=loss)
        watch.check(step, loss=loss)  # every step: a fit past 1e8 will not come back
        if cadence.due(step):
            yield _snapshot(cfg, step, x, y, phi, c.detach(), path, grads, losses)
    yield Snapshot(step, cfg.steps, final=True, state_dict={"coefficients": c.detach().clone()})


def _snapshot(cfg, step, x, y, phi, c, path, grads, losses) -> Snapshot:
    rows = torch.tensor(_thinned(step + 1))  # path rows 0..step, at most MAX_ROWS of them
    later = rows[rows > 0]  # gradients and losses start at step 1
    P = path[rows].numpy()
    grid = torch.linspace(-1, 1, 101)
    auto = c.clone().requires_grad_(True)
    graph = autograd_graph(mse(phi, y, auto), {id(auto): "c (coefficients)"})
    metrics = {
        "loss": losses[step - 1].item(),
        "gradient norm": float(grads[step - 1].norm()),
        "hand vs autograd": float((hand_gradient(phi, y, c) - auto.grad).abs().max()),
    }
    view = {
        "x": x.numpy(),
        "y": y.numpy(),
        "grid": grid.numpy(),
        "path": P,
        "path_steps": rows.numpy(),
        "grads": grads[later - 1].numpy(),
        "losses": losses[later - 1].numpy(),
        "record_steps": later.numpy(),
        "surface": loss_surface(phi, y, c, P),
        "graph": graph,
        "best": torch.linalg.lstsq(phi, y.unsqueeze(1)).solution.squeeze(1).numpy(),  # the exact minimum
    }
    return Snapshot(step, cfg.steps, metrics, view=view)


def _thinned(n: int) -> list[int]:
    """At most MAX_ROWS of range(n), evenly spread, always keeping the last."""
    stride = -(-n // MAX_ROWS)
    rows = list(range(0, n, stride))
    return rows if rows[-1] == n - 1 else rows + [n - 1]


def loss_surface(phi, y, c, path: np.ndarray) -> dict:
    """Full-data loss over (c₀, c₁) with the other coefficients held where they are now,
    on a grid that covers the path so far (quadratic in c, so it is one matrix product)."""
    lo, hi = path[:, :2].min(0), path[:, :2].max(0)
    pad = np.maximum((hi - lo) * 0.25, 0.5)
    a = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), SURFACE)
    b = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), SURFACE)
    A, B = torch.meshgrid(a, b, indexing="ij")
    C = c.repeat(SURFACE * SURFACE, 1)
    C[:, 0], C[:, 1] = A.flatten(), B.flatten()
    losses = ((C @ phi.T - y) ** 2).mean(1).reshape(SURFACE, SURFACE)  # (c0, c1)
    return {"c0": a.numpy(), "c1": b.numpy(), "loss": losses.T.numpy()}  # rows = c1


def _diverges(view):
    diverged = "diverged" in (view.message or "")
    last = view.history[-1]["loss"] if view.history else float("nan")
    return ("yes" if diverged else "no", "It diverged." if diverged else f"Final loss {last:.3g}.")


def _same_path(view):
    gap = max((row["hand vs autograd"] for row in view.history), default=float("nan"))
    return (
        "yes" if gap < 1e-5 else "no",
        f"Largest difference between the hand-derived and autograd gradients: {gap:.1e}.",
    )


QUESTIONS = [
    Question(
        "Fitting a degree-9 polynomial with a learning rate of 2: will gradient descent diverge?",
        ("yes", "no"),
        {"degree": 9, "learning_rate": 2.0, "batch_size": 200},
        _diverges,
        "The loss is a bowl whose steepest direction has curvature λ; a step larger than 2/λ "
        "overshoots further each time. High powers of x make the bowl steep in some directions.",
    ),
    Question(
        "Does autograd compute exactly the gradient we derived by hand, (2/N) Φᵀ(Φc − y)?",
        ("yes", "no"),
        {"method": "autograd"},
        _same_path,
        "Autograd applies the chain rule to the operations it recorded: the same formula, "
        "found mechanically. Only rounding differs (~1e-7 in float32).",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
