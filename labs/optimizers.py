"""Chapter 3 — Optimizers & learning rate.

Three experiments on one page: SGD, momentum, Nesterov, RMSProp, Adam and AdamW racing down
2-D surfaces (`race_on_surface`); the same optimizers training the same small net on real
digits under one seed, with a learning-rate schedule (`train`); and the LR range test whose
suggestion sets the next run's learning rate (`lr_range_test`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from labs import surfaces
from labs.core import budget, data, pacing
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import EXPLODES
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict

PREFERS_GPU = False  # 2-parameter races and a 64-32-10 MLP: overhead-bound, CPU is as fast
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "one_cycle", "warmup")


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.01):
    """The six contenders, with the textbook defaults for everything but the learning rate."""
    if name in ("sgd", "momentum", "nesterov"):
        return torch.optim.SGD(
            params, lr=lr, momentum=0.0 if name == "sgd" else 0.9, nesterov=name == "nesterov"
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


# ---------------------------------------------------------------- race on a 2-D surface


@dataclass(frozen=True)
class SurfaceConfig:
    surface: str = knob(
        "ill_conditioned", "Surface", "The landscape to descend.", choices=tuple(surfaces.SURFACES)
    )
    optimizers: tuple = knob(OPTIMIZERS, "Optimizers", "Who races.", choices=OPTIMIZERS, multi=True)
    learning_rate: float = knob(0.01, "Learning rate", "The same for every racer.", lo=1e-4, hi=1.0, log=True)
    steps: int = knob(300, "Steps", "How long the race lasts.", lo=10, hi=10000, step=10)
    tolerance: float = knob(
        0.05, "Finish radius", "Distance to a minimum that counts as there.", lo=0.001, hi=0.5, step=0.001
    )
    speed: str = pacing.speed_knob()


def race_cost(cfg: SurfaceConfig) -> budget.Cost:
    """Two numbers per racer; every point of every path is kept for the drawing."""
    racers = len(cfg.optimizers)
    cost = budget.Cost(
        params=2 * racers,
        activations=8 * racers,
        steps=cfg.steps,
        step_flops=100 * racers,
        step_ops=30 * racers,
        data=30 * cfg.steps * racers,  # each path point is a Python tuple (~120 bytes)
    )
    return pacing.paced(cost, cfg.speed)


def race_on_surface(cfg: SurfaceConfig, device: torch.device):
    """Every optimizer starts at the same point; paths, losses and finishing steps are yielded.

    An optimizer whose point leaves the finite numbers (too large a learning rate) drops out
    and is marked as diverged; the others race on.
    """
    check(cfg)
    surface = surfaces.SURFACES[cfg.surface]
    points = {n: torch.tensor(surface.start, requires_grad=True) for n in cfg.optimizers}
    opts = {n: make_optimizer(n, [p], cfg.learning_rate) for n, p in points.items()}
    paths = {n: [surface.start] for n in cfg.optimizers}
    reached: dict[str, int] = {}
    diverged: dict[str, int] = {}
    cadence = Cadence(cfg.steps, max_snaps=160, min_seconds=1 / 30)
    contours = surfaces.grid(surface)
    step = 0
    for step in steps(cfg.steps, pacing.per_second(cfg.speed)):  # ends early on Stop
        for name in cfg.optimizers:
            if name not in diverged:
                loss = _race_step(
                    name, points[name], opts[name], surface, step, paths, reached, diverged, cfg.tolerance
                )
                log(step, **{name: loss})
        if cadence.due(step):
            losses = {n: float(surface.f(*points[n].detach())) for n in cfg.optimizers if n not in diverged}
            view = {
                "paths": {n: np.array(p) for n, p in paths.items()},
                "reached": dict(reached),
                "diverged": dict(diverged),
                "contours": contours,
                "minima": surface.minima,
            }
            yield Snapshot(step, cfg.steps, losses, view=view)
    yield Snapshot(step, cfg.steps, final=True, view={"reached": dict(reached), "diverged": dict(diverged)})


def _race_step(name, point, opt, surface, step, paths, reached, diverged, tolerance) -> float:
    """One optimizer step on the surface; the height it stepped from."""
    opt.zero_grad()
    height = surface.f(point[0], point[1])
    height.backward()
    opt.step()
    if not torch.isfinite(point).all() or point.abs().max() > 1e3:
        diverged[name] = step
        return float(height.detach())
    paths[name].append(tuple(point.detach().tolist()))
    if name not in reached and surfaces.distance_to_minimum(surface, point.detach()) < tolerance:
        reached[name] = step
    return float(height.detach())


# ---------------------------------------------------------------- race training a real net


@dataclass(frozen=True)
class Config:
    optimizers: tuple = knob(
        ("sgd", "momentum", "adam"),
        "Optimizers",
        "Each trains its own copy of the same initial net.",
        choices=OPTIMIZERS,
        multi=True,
    )
    learning_rate: float = knob(
        0.01, "Learning rate", "Peak learning rate, the same for all.", lo=1e-5, hi=3.0, log=True
    )
    schedule: str = knob(
        "constant", "Schedule", "How the learning rate changes over the run.", choices=SCHEDULES
    )
    steps: int = knob(400, "Steps", "Updates per optimizer.", lo=20, hi=3000, step=20)
    batch_size: int = knob(32, "Batch size", "Images per step (8×8 digits).", lo=4, hi=512, step=4)
    hidden: int = knob(32, "Hidden units", "Width of the MLP's hidden layer.", lo=4, hi=256, step=4)
    weight_decay: float = knob(
        0.01, "AdamW weight decay", "Decoupled decay, AdamW only.", lo=0.0, hi=0.5, step=0.01
    )
    seed: int = knob(
        0, "Seed", "Same seed: same initial net and same batches for every racer.", lo=0, hi=9999, step=1
    )


def net_cost(hidden: int, batch: int, steps: int, nets: int) -> budget.Cost:
    """`nets` copies of the 64-hidden-10 net on the 8×8 digits, stepped in lockstep."""
    params, flops, saved = budget.mlp([64, hidden, 10], batch)
    return budget.Cost(
        params=params * nets,
        activations=saved * nets,
        steps=steps,
        step_flops=flops * nets,
        step_ops=45 * nets,
        data=1797 * 64,
        evaluation=360 * hidden * nets,
    )


def cost(cfg: Config) -> budget.Cost:
    return net_cost(cfg.hidden, cfg.batch_size, cfg.steps, len(cfg.optimizers))


def build_model(cfg: Config) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 10))


def make_scheduler(kind: str, opt: torch.optim.Optimizer, total: int, lr: float):
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, total // 3), gamma=0.1)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if kind == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total + 1)
    if kind == "warmup":  # linear warm-up over the first 10%, then constant
        warm = max(1, total // 10)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def lr_curve(kind: str, lr: float, total: int) -> np.ndarray:
    """The learning rate at every step of a schedule, drawn before the run starts."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = make_scheduler(kind, opt, total, lr)
    values = []
    for _ in range(total):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(values)


def digits_tensors(seed: int, device: torch.device):
    X, y = data.digits_8x8()
    X_train, y_train, X_test, y_test = data.split(X, y, 0.8, seed)
    return X_train.to(device), y_train.to(device), X_test.to(device), y_test.to(device)


def train(cfg: Config, device: torch.device):
    """All chosen optimizers step in lockstep on identical batches from one initial net."""
    check(cfg)
    g = seed_everything(cfg.seed)
    X, y, X_test, y_test = digits_tensors(cfg.seed, device)
    start = build_model(cfg).to(device)
    models = {n: copy.deepcopy(start) for n in cfg.optimizers}
    opts = {
        n: make_optimizer(n, m.parameters(), cfg.learning_rate, cfg.weight_decay) for n, m in models.items()
    }
    scheds = {n: make_scheduler(cfg.schedule, o, cfg.steps, cfg.learning_rate) for n, o in opts.items()}
    cadence = Cadence(cfg.steps, max_snaps=80, min_seconds=0.05)
    recent = {n: [] for n in models}
    planned = {"planned_lr": lr_curve(cfg.schedule, cfg.learning_rate, cfg.steps)}  # sent once
    step = 0
    for step in steps(cfg.steps):  # ends early on Stop
        batch = torch.randint(0, len(X), (cfg.batch_size,), generator=g).to(device)
        lr_now = opts[cfg.optimizers[0]].param_groups[0]["lr"]
        for name, model in models.items():
            loss = F.cross_entropy(model(X[batch]), y[batch])
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
            scheds[name].step()
            recent[name].append(loss.item())
            log(step, **{f"{name} loss": loss})
        if cadence.due(step):
            metrics = {"lr": lr_now} | _race_metrics(models, recent, X_test, y_test)
            recent = {n: [] for n in models}
            yield Snapshot(step, cfg.steps, metrics, view=planned)
            planned = {}
    yield Snapshot(step, cfg.steps, final=True, state_dict={n: cpu_state_dict(m) for n, m in models.items()})


@torch.no_grad()
def _race_metrics(models, recent, X_test, y_test) -> dict[str, float]:
    out = {}
    for name, model in models.items():
        mean = sum(recent[name]) / max(len(recent[name]), 1)
        out[f"{name} loss"] = mean if math.isfinite(mean) else float("nan")
        out[f"{name} test acc"] = (model(X_test).argmax(1) == y_test).float().mean().item()
    return out


# ---------------------------------------------------------------- LR range test


@dataclass(frozen=True)
class FinderConfig:
    optimizer: str = knob("adam", "Optimizer", "Which optimizer the range test sweeps.", choices=OPTIMIZERS)
    lr_min: float = knob(1e-5, "Start learning rate", "Where the sweep begins.", lo=1e-7, hi=1e-2, log=True)
    lr_max: float = knob(
        3.0,
        "End learning rate",
        "Where it would end (it stops early once the loss explodes).",
        lo=1e-2,
        hi=10.0,
        log=True,
    )
    steps: int = knob(120, "Steps", "Mini-batches in the sweep.", lo=20, hi=500, step=10)
    seed: int = knob(
        0, "Seed", "The net and batches are those of the race with this seed.", lo=0, hi=9999, step=1
    )


def finder_cost(cfg: FinderConfig) -> budget.Cost:
    race = Config()
    return net_cost(race.hidden, race.batch_size, cfg.steps, 1)


def lr_range_test(cfg: FinderConfig, device: torch.device, race: Config = Config()):
    """Raise the learning rate exponentially, one mini-batch at a time, and record the
    smoothed loss (Smith 2015; fastai's lr_find). Stops once the loss is 4× its best (EXPLODES)."""
    check(cfg)
    g = seed_everything(cfg.seed)
    X, y, _, _ = digits_tensors(cfg.seed, device)
    model = build_model(race).to(device)
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr_min)
    factor = (cfg.lr_max / cfg.lr_min) ** (1 / (cfg.steps - 1))
    avg, best = 0.0, math.inf
    cadence = Cadence(cfg.steps, max_snaps=60, min_seconds=0.03)
    lrs, losses, step = [], [], 0
    for step in steps(cfg.steps):  # ends early on Stop
        lr = cfg.lr_min * factor ** (step - 1)
        opt.param_groups[0]["lr"] = lr
        batch = torch.randint(0, len(X), (race.batch_size,), generator=g).to(device)
        loss = F.cross_entropy(model(X[batch]), y[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log(step, loss=loss)
        avg = 0.9 * avg + 0.1 * loss.item()
        smoothed = avg / (1 - 0.9**step)  # bias-corrected exponential average
        exploded = not math.isfinite(smoothed) or smoothed > EXPLODES * best
        if not exploded:
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
        if exploded or cadence.due(step):
            view = {"lrs": np.array(lrs), "losses": np.array(losses)}
            yield Snapshot(step, cfg.steps, {"lr": lr, "loss": smoothed}, view=view)
            if exploded:  # the range test's own end: past here, higher rates only blow up
                break
    yield Snapshot(
        step,
        cfg.steps,
        final=True,
        view={
            "lrs": np.array(lrs),
            "losses": np.array(losses),
            "suggested_lr": suggest_lr(np.array(lrs), np.array(losses)),
        },
    )


def suggest_lr(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The classic rule of thumb: a tenth of the learning rate where the loss was lowest."""
    return float(lrs[int(np.argmin(losses))] / 10) if len(lrs) else 1e-3


def _first_to_finish(view, a: str, b: str) -> tuple[str, str]:
    reached = view.view.get("reached", {})
    steps = {n: reached.get(n) for n in (a, b)}
    said = ", ".join(f"{n}: {'step ' + str(s) if s else 'not within the race'}" for n, s in steps.items())
    if steps[a] is None and steps[b] is None:
        return "neither", said
    winner = min((n for n in steps if steps[n]), key=lambda n: steps[n])
    return winner, said


SGD_FATES = ("it reaches the minimum", "it is still on its way", "it diverges")


def _sgd_fate(view) -> tuple[str, str]:
    diverged, reached = view.view.get("diverged", {}), view.view.get("reached", {})
    if "sgd" in diverged:
        return SGD_FATES[2], f"SGD left the finite numbers at step {diverged['sgd']}."
    if "sgd" in reached:
        return SGD_FATES[0], f"SGD reached the minimum at step {reached['sgd']}."
    return SGD_FATES[1], "SGD neither reached the minimum nor diverged in 300 steps."


QUESTIONS = [
    Question(
        "On the ill-conditioned bowl at learning rate 0.01, who reaches the minimum first?",
        ("sgd", "momentum", "neither"),
        {
            "surface": "ill_conditioned",
            "optimizers": ("sgd", "momentum"),
            "learning_rate": 0.01,
            "steps": 300,
        },
        lambda v: _first_to_finish(v, "sgd", "momentum"),
        "Along the shallow axis SGD moves 1% of the way per step; momentum's velocity builds up "
        "to ~10× that, while its oscillations across the steep axis cancel out.",
    ),
    Question(
        "Raise the learning rate to 0.05 on the same bowl. What happens to plain SGD?",
        SGD_FATES,
        {"surface": "ill_conditioned", "optimizers": ("sgd",), "learning_rate": 0.05, "steps": 300},
        lambda v: _sgd_fate(v),
        "The steep direction has curvature 50: any learning rate above 2/50 = 0.04 overshoots "
        "further at every step. The stable learning rate is set by the steepest direction.",
    ),
]

RACE = Experiment(SurfaceConfig, race_on_surface, race_cost, PREFERS_GPU)
FINDER = Experiment(FinderConfig, lr_range_test, finder_cost, PREFERS_GPU)


def _stacking_key(cfg: Config) -> tuple:
    from labs.optimizers_stacked import stacking_key  # it builds on this module

    return stacking_key(cfg)


def _stack(device: torch.device):
    from labs.optimizers_stacked import Stack

    return Stack(device)


# Learners' races of one shape train as one batch (labs/core/batches.py), in a Stack.
NET = Experiment(Config, train, cost, PREFERS_GPU, _stacking_key, _stack)
# by part, in the order of the page's Train buttons (labs/core/contract.py)
EXPERIMENTS = {
    "surface": RACE,
    "finder": FINDER,
    "net": NET,
}
