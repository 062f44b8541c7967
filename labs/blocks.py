"""Chapter 8's third experiment — plain, residual and dense conv stacks.

Three stacks of 3×3 convolutions on the 8×8 digits, at about equal weight counts, side by side
under one seed: a plain stack, the same stack with residual connections, and a DenseNet-style
stack (each layer sees every earlier layer's maps). The learner sees each one's gradient per
layer: the deep plain stack's first layers hear little of the loss, the skip paths carry it
down. The page is pages/transfer.py; labs/transfer.py lists this experiment with its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from labs.classifier_metrics import accuracy
from labs.core import budget, data
from labs.core.compare import side_by_side
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.hooks import layer_stats, record_activations
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict

PREFERS_GPU = True
STACKS = {"plain": "plain", "residual": "residual", "dense": "dense"}


# ---------------------------------------------------------------- the stacks


class DeepCNN(nn.Module):
    """On 8×8 digits: a stem conv and `depth` 3×3 conv layers at full resolution, wired as a plain
    stack, with a skip around every two layers (residual), or densely (each layer reads every
    earlier map of the stack). Every conv layer is followed by its own ReLU module."""

    def __init__(self, kind: str, depth: int, width: int, growth: int = 0):
        super().__init__()
        self.kind = kind
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        if kind == "dense":
            ins = [width + i * growth for i in range(depth)]
            self.convs = nn.ModuleList(nn.Conv2d(c, growth, 3, padding=1) for c in ins)
            out = width + depth * growth
        else:
            self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
            out = width
        self.acts = nn.ModuleList(nn.ReLU() for _ in self.convs)
        if kind == "residual":  # scaled branches: the sum stays the size of its input at any depth
            self.branch_scale = 1 / math.sqrt(max(1, depth // 2))
        self.head = nn.Linear(out, 10)

    def forward(self, x):
        x = self.stem(x)
        if self.kind == "dense":
            maps = [x]
            for conv, act in zip(self.convs, self.acts):
                maps.append(act(conv(torch.cat(maps, 1))))
            x = torch.cat(maps, 1)
        elif self.kind == "residual":
            for i in range(0, len(self.convs) - 1, 2):
                h = self.acts[i](self.convs[i](x))
                x = x + self.branch_scale * self.acts[i + 1](self.convs[i + 1](h))
            if len(self.convs) % 2:  # an odd last layer stands on its own
                x = self.acts[-1](self.convs[-1](x))
        else:
            for conv, act in zip(self.convs, self.acts):
                x = act(conv(x))
        return self.head(x.mean((2, 3)))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_params(kind: str, depth: int, width: int, growth: int = 0) -> int:
    if kind == "dense":
        return sum(9 * (width + i * growth) * growth + growth for i in range(depth))
    return depth * (9 * width * width + width)


def dense_growth(depth: int, width: int) -> int:
    """The growth rate that gives the dense stack about the plain stack's weight count."""
    target = conv_params("plain", depth, width)
    return min(range(1, 4 * width + 1), key=lambda k: abs(conv_params("dense", depth, width, k) - target))


def build_deep(kind: str, depth: int, width: int) -> DeepCNN:
    return DeepCNN(kind, depth, width, dense_growth(depth, width) if kind == "dense" else 0)


# ---------------------------------------------------------------- config and cost


@dataclass(frozen=True)
class BlocksConfig:
    blocks: tuple = knob(
        tuple(STACKS),
        "Compare",
        "About equal weight counts.",
        choices=tuple(STACKS),
        multi=True,
        labels=STACKS,
    )
    depth: int = knob(12, "Conv layers", "3×3, after the stem, on 8×8 digits.", lo=2, hi=40, step=2)
    width: int = knob(16, "Width", "Channels of the plain and residual stacks.", lo=4, hi=64, step=4)
    learning_rate: float = knob(2e-3, "Learning rate", "Adam's step size.", lo=1e-5, hi=0.1, log=True)
    steps: int = knob(200, "Steps", "For each stack.", lo=10, hi=3000, step=10)
    batch_size: int = knob(64, "Batch size", "Images per step.", lo=8, hi=256, step=8)
    seed: int = knob(0, "Seed", "Same seed, same batches.", lo=0, hi=9999, step=1)


def blocks_cost(cfg: BlocksConfig) -> budget.Cost:
    costs = []
    for kind in cfg.blocks:
        growth = dense_growth(cfg.depth, cfg.width) if kind == "dense" else 0
        convs = conv_params(kind, cfg.depth, cfg.width, growth)
        stem = 10 * cfg.width
        out_c = cfg.width + cfg.depth * growth if kind == "dense" else cfg.width
        flops = 3 * 2 * (convs + stem) * 64 * cfg.batch_size
        kept = (2 * cfg.depth * (growth or cfg.width) + 2 * cfg.width) * 64 * cfg.batch_size
        if kind == "dense":
            kept += cfg.depth * out_c * 64 * cfg.batch_size / 2  # the concatenations
        costs.append(
            budget.Cost(
                convs + stem + 10 * out_c,
                kept,
                cfg.steps,
                flops,
                20 + 12 * cfg.depth,
                2,
                1797 * 64,
                kind="conv",
            )  # fmt: skip
        )
    return budget.total(costs)


# ---------------------------------------------------------------- training


def train_blocks(cfg: BlocksConfig, device: torch.device):
    """Plain, residual and dense stacks side by side, on the same batches of the 8×8 digits
    (small images keep a deep stack quick on a laptop)."""
    check(cfg)
    yield from side_by_side({STACKS[k]: train_stack(k, cfg, device) for k in cfg.blocks}, device)


def train_stack(kind: str, cfg: BlocksConfig, device: torch.device):
    g = seed_everything(cfg.seed)
    ds = data.image_set("digits8", seed=cfg.seed)
    X, y = ds.X_train.to(device), ds.y_train.to(device)
    X_test, y_test = ds.X_test.to(device), ds.y_test.to(device)
    model = build_deep(kind, cfg.depth, cfg.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    layers = {f"layer {i + 1}": a for i, a in enumerate(model.acts)}
    convs = {f"layer {i + 1}": c for i, c in enumerate(model.convs)}
    cadence = Cadence(cfg.steps, max_snaps=40, min_seconds=0.1)
    notes = [f"{kind}: {n_params(model):,} weights"]
    step = 0
    with record_activations(layers) as latest:
        watch = LossWatch()
        for step in steps(cfg.steps):
            batch = torch.randint(0, len(X), (cfg.batch_size,), generator=g).to(device)
            loss = F.cross_entropy(model(X[batch]), y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            log(step, train_loss=loss)
            if cadence.due(step):
                watch.check(step, loss=loss)
                stats = layer_stats(layers, latest, convs, hist_range=(-0.5, 3.0))
                test_loss, test_acc = accuracy(model, X_test[:500], y_test[:500])
                snap = Snapshot(
                    step,
                    cfg.steps,
                    {"test_loss": test_loss, "test_acc": test_acc},
                    stats,
                    view={"weights": n_params(model)},
                    notes=notes,
                )
                notes = []
                yield snap
    yield Snapshot(step, cfg.steps, final=True, state_dict=cpu_state_dict(model))


BLOCKS = Experiment(BlocksConfig, train_blocks, blocks_cost, PREFERS_GPU)
