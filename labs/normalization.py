"""Chapter 5 — Normalization & residual connections.

The same deep MLP, plain and with BatchNorm, LayerNorm or skip connections, trained side by
side under one seed (labs/core/compare.py): same data, same batches, same initial weights
wherever the architectures agree. The learner sees the curves overlaid and each variant's
gradient flow and activation statistics layer by layer: the plain net's early layers starve
while the residual one passes the gradient straight through, and BatchNorm keeps training at
learning rates where the plain net blows up.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from labs import mlp_stacked, stack_members
from labs.core import budget, mlp
from labs.core.compare import side_by_side
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.questions import Question

PREFERS_GPU = True
VARIANTS = {  # key -> (label, norm, residual)
    "plain": ("plain", "none", False),
    "batchnorm": ("BatchNorm", "batch", False),
    "layernorm": ("LayerNorm", "layer", False),
    "residual": ("residual", "none", True),
    "residual_batchnorm": ("residual + BatchNorm", "batch", True),
}


@dataclass(frozen=True)
class Config:
    variants: tuple = knob(
        ("plain", "batchnorm", "residual"),
        "Compare",
        "Each is trained on the same batches from the same seed.",
        choices=tuple(VARIANTS),
        multi=True,
        labels={k: label for k, (label, _, _) in VARIANTS.items()},
    )
    depth: int = knob(20, "Depth (hidden layers)", "Blocks of Linear → norm → ReLU.", lo=2, hi=50, step=1)
    width: int = knob(32, "Width", "Units per hidden layer.", lo=8, hi=256, step=8)
    learning_rate: float = knob(0.01, "Learning rate", "SGD with momentum 0.9.", lo=1e-4, hi=3.0, log=True)
    batch_size: int = knob(
        64, "Batch size", "BatchNorm's statistics come from the batch.", lo=2, hi=512, step=2
    )
    steps: int = knob(200, "Steps", "Gradient steps for each variant.", lo=10, hi=3000, step=10)
    seed: int = knob(0, "Seed", "Same seed, same data, same start, same run.", lo=0, hi=9999, step=1)


def recipe(cfg: Config, variant: str) -> mlp.Recipe:
    """PyTorch's default init and ReLU: the everyday setting, where depth alone hurts."""
    _, norm, residual = VARIANTS[variant]
    return mlp.Recipe(
        depth=cfg.depth,
        width=cfg.width,
        activation="relu",
        init="default",
        norm=norm,
        residual=residual,
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        steps=cfg.steps,
        seed=cfg.seed,
    )


def label(variant: str) -> str:
    return VARIANTS[variant][0]


def cost(cfg: Config) -> budget.Cost:
    """Every chosen variant trains at once, side by side."""
    return budget.total(mlp.recipe_cost(recipe(cfg, v)) for v in cfg.variants)


def build_model(cfg: Config, variant: str = "plain") -> mlp.DeepMLP:
    return mlp.build(recipe(cfg, variant))


def train(cfg: Config, device: torch.device):
    """Every chosen variant, side by side: one lockstep run of mlp.train_digits each."""
    check(cfg)
    yield from side_by_side(
        {label(v): mlp.train_digits(recipe(cfg, v), device) for v in cfg.variants}, device
    )


def final_accuracy(view, variant: str) -> float | None:
    """A variant's last test accuracy; None if it diverged before its first snapshot."""
    status = view.view.get("variants", {}).get(label(variant), {}).get("status", "")
    return None if status.startswith("diverged") else view.last(f"{label(variant)}: test_acc")


def _trains(view, variant: str) -> tuple[bool, str]:
    acc = final_accuracy(view, variant)
    return acc is not None and acc > 0.5, "diverged" if acc is None else f"{acc:.0%} test accuracy"


def _which_trains(other: str, only_other: str):
    """Outcome of "which of plain and `other` trains?": one of the four answers, with evidence."""

    def outcome(view):
        plain, plain_says = _trains(view, "plain")
        them, their_says = _trains(view, other)
        answer = {(True, True): "both", (False, False): "neither", (True, False): "only the plain net"}.get(
            (plain, them), only_other
        )
        return answer, f"Plain: {plain_says}; {label(other)}: {their_says}."

    return outcome


QUESTIONS = [
    Question(
        "30 ReLU layers, default init, 300 steps: which learns digits (over 50% test accuracy)?",
        ("only the plain net", "only the residual net", "both", "neither"),
        {"variants": ("plain", "residual"), "depth": 30, "learning_rate": 0.01, "steps": 300},
        _which_trains("residual", "only the residual net"),
        "Through a plain stack the gradient is multiplied by every layer's weights on its way "
        "down and fades; a skip connection adds an identity path, so the early layers still hear "
        "the loss.",
    ),
    Question(
        "Two layers at a learning rate of 1 (with momentum 0.9): which of the plain and the "
        "BatchNorm net trains?",
        ("only the plain net", "only BatchNorm", "both", "neither"),
        {"variants": ("plain", "batchnorm"), "depth": 2, "learning_rate": 1.0, "steps": 300},
        _which_trains("batchnorm", "only BatchNorm"),
        "BatchNorm rescales every layer's inputs to mean 0, variance 1 at each step, so a "
        "large update cannot snowball through the layers above it.",
    ),
]


def stacking_key(cfg: Config) -> tuple:
    """What learners' runs must share to train as one batch: the variants and the shapes."""
    return (tuple(cfg.variants), cfg.depth, cfg.width, cfg.batch_size, cfg.steps)


def _variants(cfg: Config) -> dict[str, str]:
    return {label(v): v for v in cfg.variants}


def _variant_stack(device: torch.device, variant: str) -> mlp_stacked.Stack:
    return mlp_stacked.Stack(device, partial(recipe, variant=variant))


# Learners' runs of one shape train as one batch (labs/core/batches.py): one stacked deep MLP per
# variant, each run a member of each, merged as side_by_side merges them.
EXPERIMENT = Experiment(
    Config,
    train,
    cost,
    PREFERS_GPU,
    stacking_key,
    partial(stack_members.SideBySide, variants_of=_variants, stack_of=_variant_stack, key_of=stacking_key),
)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
