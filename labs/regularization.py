"""Chapter 6 — Overfitting & regularization.

A wide MLP memorizes a small set of digits. Side by side under one seed (labs/core/compare.py),
the same net with no regularization and with the learner's remedies: weight decay, dropout,
data augmentation (shifts, rotations, noise) and early stopping. Label noise makes the
training set lie, which is when memorizing hurts most. The learner sees train against
validation with the gap shaded, where early stopping would cut, the weights' histograms, and
what augmentation does to the images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from figures.variants import metric
from labs.core import budget, mlp
from labs.core.compare import side_by_side
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps, stop_requested
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy

PREFERS_GPU = True
AUGMENTATIONS = {"shift": "shift ±3 px", "rotate": "rotate ±15°", "noise": "pixel noise"}
BASELINE, REGULARIZED = "no regularization", "regularized"
VALIDATION = 500  # held-out images scored after every epoch (early stopping needs each one)
WEIGHT_RANGE = (-0.25, 0.25)  # fixed histogram range, so the two variants compare bin by bin


@dataclass(frozen=True)
class Config:
    train_size: int = knob(
        200, "Training images", "Fewer images, easier to memorize.", lo=50, hi=4000, step=50
    )
    width: int = knob(256, "Width", "Units per hidden layer: capacity.", lo=16, hi=1024, step=16)
    depth: int = knob(2, "Hidden layers", "More layers, more capacity.", lo=1, hi=4, step=1)
    weight_decay: float = knob(
        5e-3, "Weight decay", "Pulls every weight toward 0 at each step (L2).", lo=0.0, hi=0.05, step=5e-4
    )
    dropout: float = knob(
        0.5, "Dropout", "Share of hidden units silenced at each step.", lo=0.0, hi=0.8, step=0.05
    )
    augment: tuple = knob(
        ("shift",),
        "Augmentation",
        "Random changes to each training image at each step.",
        choices=tuple(AUGMENTATIONS),
        multi=True,
        may_be_empty=True,
        labels=AUGMENTATIONS,
    )
    patience: int = knob(
        0,
        "Early stopping patience",
        "Stop after this many epochs without a better validation loss (0: off).",
        lo=0,
        hi=50,
        step=1,
    )
    label_noise: float = knob(
        0.2, "Label noise", "Share of training labels replaced by a random digit.", lo=0.0, hi=0.5, step=0.05
    )
    learning_rate: float = knob(0.02, "Learning rate", "SGD with momentum 0.9.", lo=1e-4, hi=0.5, log=True)
    batch_size: int = knob(32, "Batch size", "Images per step.", lo=8, hi=256, step=8)
    epochs: int = knob(40, "Epochs", "Passes over the training images.", lo=5, hi=500, step=5)
    seed: int = knob(0, "Seed", "Same seed, same data, same start, same run.", lo=0, hi=9999, step=1)


def unregularized(cfg: Config) -> Config:
    """The same experiment with every remedy off (label noise is the data's, so it stays)."""
    return Config(**{**cfg.__dict__, "weight_decay": 0.0, "dropout": 0.0, "augment": (), "patience": 0})


def cost(cfg: Config) -> budget.Cost:
    """Two nets side by side; every epoch also measures both on all training images."""
    widths = [28 * 28] + [cfg.width] * cfg.depth + [10]
    batch = min(cfg.batch_size, cfg.train_size)
    per_epoch = math.ceil(cfg.train_size / batch)
    params, flops, saved = budget.mlp(widths, batch, saved_per_unit=4)  # + dropout's mask, output
    measured = cfg.train_size + VALIDATION
    one = budget.Cost(
        params=params,
        activations=saved,
        steps=cfg.epochs * per_epoch,
        step_flops=flops + flops / 3 / batch * measured / per_epoch,  # each epoch's evaluation
        step_ops=20 + (cfg.depth + 1) * 26 + (30 if cfg.augment else 0),
        optimizer_states=1,
        data=2 * mlp.DIGITS * 28 * 28,
        evaluation=measured * cfg.width * 2,
    )
    return one + one


def build_model(cfg: Config) -> mlp.DeepMLP:
    return mlp.DeepMLP(28 * 28, 10, cfg.width, cfg.depth, "relu", dropout=cfg.dropout)


def augment(x: torch.Tensor, kinds: tuple, g: torch.Generator) -> torch.Tensor:
    """Random shifts and rotations (one affine warp per image) and pixel noise, on the device.
    Images are standardized, so borders repeat the edge (background) instead of zero-filling."""
    n = len(x)
    if "shift" in kinds or "rotate" in kinds:
        angle = (
            (torch.rand(n, generator=g) * 2 - 1) * math.radians(15) if "rotate" in kinds else torch.zeros(n)
        )
        shift = (torch.rand(n, 2, generator=g) * 2 - 1) * (6 / 28) if "shift" in kinds else torch.zeros(n, 2)
        cos, sin = torch.cos(angle), torch.sin(angle)  # 3 px = 6/28 in [-1, 1] coordinates
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    if "noise" in kinds:
        x = x + 0.5 * torch.randn(x.shape, generator=g).to(x.device)
    return x


def with_label_noise(y: torch.Tensor, share: float, g: torch.Generator) -> torch.Tensor:
    """Replace `share` of the labels by a random digit (which may, by chance, be the right one)."""
    flip = torch.rand(len(y), generator=g) < share
    return torch.where(flip, torch.randint(0, 10, (len(y),), generator=g), y.cpu()).to(y.device)


def train(cfg: Config, device: torch.device):
    """Without and with the chosen remedies, side by side from the same seed."""
    check(cfg)
    variants = {BASELINE: train_one(unregularized(cfg), device), REGULARIZED: train_one(cfg, device)}
    yield from side_by_side(variants, device)


def train_one(cfg: Config, device: torch.device):
    """One run: epochs of SGD over the small training set, validation after every epoch."""
    g = seed_everything(cfg.seed)
    X_train, y_train, X_val, y_val = mlp.digits(cfg.seed, cfg.train_size, device)
    X_val, y_val = X_val[:VALIDATION], y_val[:VALIDATION]
    y_train = with_label_noise(y_train, cfg.label_noise, g)
    model = build_model(cfg).to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.learning_rate, momentum=0.9, weight_decay=cfg.weight_decay, foreach=True
    )
    cadence = Cadence(cfg.epochs, max_snaps=60, min_seconds=0.05)
    best = (math.inf, 0, None)  # (validation loss, epoch, weights)
    view = {"samples": _augmented_samples(X_train, cfg, g), "weight_range": WEIGHT_RANGE}
    epoch, watch = 0, LossWatch()
    for epoch in steps(cfg.epochs):  # ends early on Stop
        if not one_epoch(model, opt, X_train, y_train, cfg, g, epoch):
            break  # stopped mid-epoch: the final snapshot keeps what was learned
        metrics = evaluate(model, X_train, y_train, X_val, y_val)
        watch.check(epoch, loss=metrics["train_loss"])
        if metrics["val_loss"] < best[0]:
            best = (metrics["val_loss"], epoch, cpu_state_dict(model) if cfg.patience else None)
        view["best_epoch"] = best[1]
        stopping = cfg.patience and epoch - best[1] >= cfg.patience
        if stopping:  # keep the weights of the best epoch, as early stopping means to
            model.load_state_dict(best[2])
            view["ended"] = f"early-stopped at epoch {epoch}, kept epoch {best[1]}"
            view["stopped_epoch"] = epoch
        if cadence.due(epoch) or stopping:
            snap = Snapshot(epoch, cfg.epochs, metrics, view={**view, "weights": weight_histograms(model)})
            view.pop("samples", None)  # sent once
            yield snap
            if stopping:  # early stopping ends the run here, as Stop would
                break
    yield Snapshot(epoch, cfg.epochs, final=True, state_dict=cpu_state_dict(model), view=view)


def one_epoch(model, opt, X_train, y_train, cfg: Config, g: torch.Generator, epoch: int) -> bool:
    """One pass over the shuffled training images; False if Stop came before it ended."""
    order = torch.randperm(len(X_train), generator=g).to(X_train.device)
    batches = order.split(cfg.batch_size)
    for i, batch in enumerate(batches):
        if stop_requested():
            return False
        x = augment(X_train[batch], cfg.augment, g) if cfg.augment else X_train[batch]
        loss = F.cross_entropy(model(x), y_train[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log(epoch - 1 + (i + 1) / len(batches), train_loss=loss)  # x in epochs
    return True


@torch.no_grad()
def evaluate(model, X_train, y_train, X_val, y_val) -> dict[str, float]:
    """Loss and accuracy on the (clean) training images and on held-out ones, dropout off."""
    model.eval()
    out = {}
    for split, X, y in (("train", X_train, y_train), ("val", X_val, y_val)):
        logits = model(X)
        out[f"{split}_loss"] = F.cross_entropy(logits, y).item()
        out[f"{split}_acc"] = (logits.argmax(1) == y).float().mean().item()
    model.train()
    out["gap"] = out["val_loss"] - out["train_loss"]
    return out


def weight_histograms(model: mlp.DeepMLP, bins: int = 40) -> dict[str, np.ndarray]:
    """Share of each layer's weights per bin over WEIGHT_RANGE (the ends catch the tails)."""
    lo, hi = WEIGHT_RANGE
    layers = {f"layer {i + 1}": b.linear.weight for i, b in enumerate(model.blocks)} | {
        "output": model.head.weight
    }
    return {
        name: to_numpy(torch.histc(w.detach().clamp(lo, hi), bins=bins, min=lo, max=hi) / w.numel())
        for name, w in layers.items()
    }


def _augmented_samples(X_train: torch.Tensor, cfg: Config, g: torch.Generator) -> np.ndarray:
    """Six training images, each followed by three augmented versions: (24, 28, 28)."""
    originals = X_train[:6]
    if not cfg.augment:
        return to_numpy(originals[:, 0])
    copies = [originals] + [
        augment(originals, cfg.augment, torch.Generator().manual_seed(k)) for k in range(3)
    ]
    return to_numpy(torch.stack(copies, 1).reshape(-1, 28, 28))


def last(view, variant: str, name: str) -> float | None:
    return view.last(metric(variant, name))


def _gap_outcome(view):
    base, reg = last(view, BASELINE, "gap"), last(view, REGULARIZED, "gap")
    if base is None or reg is None:
        return "no", "A variant produced no validation numbers."
    return (
        "yes" if reg < base else "no",
        f"Validation minus training loss: {base:.2f} without regularization, {reg:.2f} with.",
    )


def _memorizes(view):
    acc, val = last(view, BASELINE, "train_acc"), last(view, BASELINE, "val_acc")
    return (
        "yes" if acc is not None and acc > 0.99 else "no",
        f"The unregularized net: {acc:.0%} on its training images, {val:.0%} on new ones.",
    )


QUESTIONS = [
    Question(
        "A 256-wide net, 200 training images, 30% of their labels wrong: will the unregularized "
        "net get over 99% of its training labels 'right' — wrong ones included?",
        ("yes", "no"),
        {"train_size": 200, "width": 256, "label_noise": 0.3, "epochs": 60},
        _memorizes,
        "A big enough net can memorize anything, even random labels (Zhang et al., 2017): "
        "fitting the training set says nothing about what it learned.",
    ),
    Question(
        "Weight decay 0.005 and dropout 0.5: will they narrow the gap between validation and training loss?",
        ("yes", "no"),
        {"weight_decay": 5e-3, "dropout": 0.5, "augment": (), "patience": 0},
        _gap_outcome,
        "Both make memorizing costly: decay shrinks the large weights a memorized detail needs, "
        "and dropout forbids relying on any one unit.",
    ),
]

# Runs train alone, not batched with other learners' (labs/core/batches.py): a stacked version
# of this 784-256-256-10 net, augmented and with dropout, was built and measured (bench.batched
# --chapter regularization, commit ce09c6d): compute-bound in float64 and drawing each member's
# augmentations and masks apart, a batch trained at half the steps a second of separate runs.
EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
