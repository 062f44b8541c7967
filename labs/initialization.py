"""Chapter 4 — Initialization, activations & depth.

A deep fully connected net (up to 50 layers) learns digits while the learner watches every
layer: activation histograms over time, the gradient each layer's weights receive (log scale),
the share of dead or saturated units, and whether units in a layer are still different from
each other. Vanishing gradients (sigmoid, badly scaled weights), exploding ones (ReLU with
N(0, 1)), the symmetry that zero init never breaks, and the fixes (Xavier for tanh, Kaiming
for ReLU) are each one preset away.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from labs import mlp_stacked
from labs.core import mlp, pacing
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.questions import Question

PREFERS_GPU = True  # 20+ layers of matrix products: a GPU helps once width grows
PRESETS = {  # what each shows, and the settings that show it
    "Vanishing: sigmoid + N(0, 1)": {"activation": "sigmoid", "init": "normal1"},
    "Exploding: ReLU + N(0, 1)": {"activation": "relu", "init": "normal1"},
    "Collapsing: tanh + N(0, 0.01²)": {"activation": "tanh", "init": "normal001"},
    "Symmetric: sigmoid + zeros": {"activation": "sigmoid", "init": "zeros"},
    "Healthy: tanh + Xavier": {"activation": "tanh", "init": "xavier"},
    "Healthy: ReLU + Kaiming": {"activation": "relu", "init": "kaiming"},
}


@dataclass(frozen=True)
class Config:
    depth: int = knob(
        20, "Depth (hidden layers)", "How many layers the gradient must cross.", lo=1, hi=50, step=1
    )
    width: int = knob(32, "Width", "Units per hidden layer.", lo=8, hi=256, step=8)
    activation: str = knob(
        "sigmoid",
        "Activation",
        "The non-linearity after every layer.",
        choices=tuple(mlp.ACTIVATIONS),
        labels=mlp.ACTIVATION_LABELS,
    )
    init: str = knob(
        "normal1", "Initialization", "How every weight starts.", choices=tuple(mlp.INITS), labels=mlp.INITS
    )
    learning_rate: float = knob(0.01, "Learning rate", "SGD with momentum 0.9.", lo=1e-4, hi=1.0, log=True)
    batch_size: int = knob(64, "Batch size", "Images per step.", lo=8, hi=512, step=8)
    steps: int = knob(300, "Steps", "Gradient steps to train.", lo=10, hi=3000, step=10)
    seed: int = knob(0, "Seed", "Same seed, same data, same start, same run.", lo=0, hi=9999, step=1)
    # 300 steps take about a second: watched at 60 a second, the gradients' story unfolds
    speed: str = pacing.speed_knob()


def recipe(cfg: Config) -> mlp.Recipe:
    return mlp.Recipe(
        depth=cfg.depth,
        width=cfg.width,
        activation=cfg.activation,
        init=cfg.init,
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        steps=cfg.steps,
        seed=cfg.seed,
        per_second=pacing.per_second(cfg.speed),
    )


def cost(cfg: Config):
    return mlp.recipe_cost(recipe(cfg))


def build_model(cfg: Config) -> mlp.DeepMLP:
    return mlp.build(recipe(cfg))


def train(cfg: Config, device: torch.device):
    """The deep MLP on digits (labs/core/mlp.py: train_digits), one snapshot per ~5% of the run."""
    check(cfg)
    yield from mlp.train_digits(recipe(cfg), device)


def first_gradients(view) -> tuple[float, float]:
    """(first layer, last layer) RMS weight gradient at the first snapshot: the init's effect,
    before training has moved the weights."""
    step, layers = view.layer_history[0]
    rms = [stats["grad_rms"] for stats in layers.values()]
    return rms[0], rms[-1]


def _vanishing(view):
    first, last = first_gradients(view)
    ratio = last / max(first, 1e-30)
    return (
        "yes" if ratio > 100 else "no",
        f"At the first step the last layer's gradient was {ratio:.0f}× the first layer's.",
    )


def _symmetric(view):
    shares = view.view.get("distinct_units", [1.0])
    all_same = max(shares) <= 1 / view.cfg.width + 1e-9
    return (
        "yes" if all_same else "no",
        f"Distinct units per layer at the end: {min(shares) * view.cfg.width:.0f} of {view.cfg.width}.",
    )


QUESTIONS = [
    Question(
        "20 sigmoid layers with weights drawn from N(0, 1): will the first layer's gradient be "
        "over 100× smaller than the last layer's?",
        ("yes", "no"),
        {"depth": 20, "activation": "sigmoid", "init": "normal1", "steps": 30},
        _vanishing,
        "Each sigmoid layer multiplies the backward signal by σ′ ≤ 0.25, and large weights "
        "saturate the units so σ′ is nearly 0: twenty such factors shrink it geometrically.",
    ),
    Question(
        "Start every weight at zero, then train. Will the units of a layer still all be identical?",
        ("yes", "no"),
        {"init": "zeros", "activation": "sigmoid"},
        _symmetric,
        "Identical units compute identical outputs and receive identical gradients, so no "
        "update can ever tell them apart: random init exists to break this symmetry.",
    ),
]


def stacking_key(cfg: Config) -> tuple | None:
    return mlp_stacked.stacking_key(recipe(cfg))


# Learners' runs of one shape train as one batch (labs/core/batches.py), in a stacked deep MLP:
# seeds, initializations and learning rates differ member by member.
EXPERIMENT = Experiment(
    Config, train, cost, PREFERS_GPU, stacking_key, partial(mlp_stacked.Stack, recipe_of=recipe)
)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
