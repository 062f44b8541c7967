"""A deep fully connected net with every knob the training-technique chapters turn:
activation, initialization, normalization, residual connections, dropout.

Chapters 4 (initialization & depth), 5 (normalization & residuals) and 6 (overfitting &
regularization) all train this net on digits, so a learner who moves from one chapter to the
next sees the same model with one thing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F

from labs.core import budget, data
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import EXPLODES, LossWatch
from labs.core.hooks import layer_stats, record_activations
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict

ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "gelu": nn.GELU,
}
ACTIVATION_LABELS = {
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "ReLU",
    "leaky_relu": "leaky ReLU",
    "gelu": "GELU",
}
HIST_RANGE = {  # where each activation's outputs live: the histogram's fixed range
    "sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "relu": (-0.5, 3.0),
    "leaky_relu": (-0.5, 3.0),
    "gelu": (-0.5, 3.0),
}
INITS = {
    "default": "PyTorch default (uniform ±1/√fan_in)",
    "normal1": "N(0, 1)",
    "normal001": "N(0, 0.01²)",
    "xavier": "Xavier/Glorot (var 2/(fan_in+fan_out))",
    "kaiming": "Kaiming/He (var 2/fan_in)",
    "zeros": "zeros",
}
NORMS = ("none", "batch", "layer")


class Block(nn.Module):
    """Linear -> norm -> activation -> dropout; or, residual, x + Linear(activation(norm(x))).

    The residual form is He et al.'s "pre-activation" block (and the pre-LN Transformer's):
    the skip path carries x untouched, and the branch adds a zero-mean correction. Stacked,
    both forms run the same Linear -> norm -> activation chain; only the skip differs. A
    post-activation skip, x + relu(Wx), would add a positive amount at every layer and
    blow the signal up with depth."""

    def __init__(self, n_in, n_out, activation, norm="none", residual=False, dropout=0.0):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.norm = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}.get(norm, lambda n: nn.Identity())(n_out)
        self.act = ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual and n_in == n_out

    def forward(self, x):
        if self.residual:
            return x + self.drop(self.linear(self.act(self.norm(x))))
        return self.drop(self.act(self.norm(self.linear(x))))


class DeepMLP(nn.Module):
    """`depth` hidden blocks of `width` units, then a linear head. The first block changes
    the width, so it is never residual."""

    def __init__(self, n_in, n_out, width, depth, activation, norm="none", residual=False, dropout=0.0):
        super().__init__()
        widths = [n_in] + [width] * depth
        self.blocks = nn.ModuleList(
            Block(a, b, activation, norm, residual, dropout) for a, b in zip(widths, widths[1:])
        )
        self.head = nn.Linear(width, n_out)

    def forward(self, x):
        x = x.flatten(1)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def initialize(model: nn.Module, scheme: str, activation: str) -> None:
    """Set every Linear layer's weights by `scheme` (biases to zero, except for the default)."""
    if scheme == "default":
        return
    gain_of = "leaky_relu" if activation == "leaky_relu" else "relu"
    for m in model.modules():
        if not isinstance(m, nn.Linear):
            continue
        with torch.no_grad():
            if scheme == "normal1":
                m.weight.normal_(0.0, 1.0)
            elif scheme == "normal001":
                m.weight.normal_(0.0, 0.01)
            elif scheme == "xavier":
                nn.init.xavier_normal_(m.weight)
            elif scheme == "kaiming":  # He et al. derived it for ReLU; used as such for all
                nn.init.kaiming_normal_(m.weight, nonlinearity=gain_of)
            elif scheme == "zeros":
                m.weight.zero_()
            m.bias.zero_()


def recorded_layers(model: DeepMLP) -> tuple[dict, dict]:
    """Activations after each block (what the next layer sees); gradients of its Linear."""
    acts = {f"layer {i + 1}": b for i, b in enumerate(model.blocks)}
    grads = {f"layer {i + 1}": b.linear for i, b in enumerate(model.blocks)}
    return acts, grads


def distinct_units(model: DeepMLP) -> list[float]:
    """Per hidden layer, the share of units whose incoming weights differ from every other
    unit's (1 = all different; 1/width = all identical, as after zero init)."""
    return [distinct_rows(b.linear.weight) for b in model.blocks]


def distinct_rows(weight: torch.Tensor) -> float:
    """The share of a layer's units (rows of its weight) unlike every other unit."""
    rows = torch.round(weight.detach().float().cpu() * 1e6)
    return len(torch.unique(rows, dim=0)) / rows.shape[0]


def digits(seed: int, train_size: int | None = None, device: torch.device | None = None):
    """The shipped 28×28 digits, standardized (mean 0, std 1 over all pixels, so that the
    init formulas' assumptions hold), as (X_train, y_train, X_test, y_test) on `device`.
    Shared, on the CPU: read them, never write into them."""
    X_train, y_train, X_test, y_test = _standardized_digits(seed)
    if train_size is not None:
        X_train, y_train = X_train[:train_size], y_train[:train_size]
    parts = (X_train, y_train, X_test, y_test)
    return tuple(t.to(device) for t in parts) if device is not None else parts


@lru_cache(maxsize=4)
def _standardized_digits(seed: int) -> tuple[torch.Tensor, ...]:
    """Made once per seed in a process: normalization's variants each train on them, and a
    learner's next run starts on them (each copy was ~40 MB of fresh memory, 0.1-0.4 s of a
    run's first step where the kernel is slow to hand pages over)."""
    s = data.image_set("mnist_subset", test_fraction=0.2, seed=seed)
    mean, std = s.X_train.mean(), s.X_train.std()
    return (s.X_train - mean) / std, s.y_train, (s.X_test - mean) / std, s.y_test


@dataclass(frozen=True)
class Recipe:
    """Everything one run of the deep MLP on digits needs (a chapter's Config maps onto it)."""

    depth: int = 20
    width: int = 64
    activation: str = "relu"
    init: str = "default"
    norm: str = "none"
    residual: bool = False
    learning_rate: float = 0.05
    batch_size: int = 64
    steps: int = 300
    seed: int = 0
    per_second: float | None = None  # a watchable pace (labs/core/pacing.py); None: full speed


PROBE = 256  # training images whose activations are measured at each snapshot


def build(r: Recipe) -> DeepMLP:
    model = DeepMLP(28 * 28, 10, r.width, r.depth, r.activation, r.norm, r.residual)
    initialize(model, r.init, r.activation)
    if r.residual:
        start_near_identity(model, r.depth)
    return model


def start_near_identity(model: DeepMLP, depth: int) -> None:
    """Scale each residual branch's weights by 1/√depth (as GPT-2 does its residual
    projections). Every branch adds its own variance to the skip path, so without it a
    30-block stack starts with outputs 4-8× larger (seeds 0-2, tests/test_text_claims.py)
    and, for some seeds, blows up in its first steps; with it, the stack starts close to the
    identity and trains for every seed."""
    with torch.no_grad():
        for block in model.blocks:
            if block.residual:
                block.linear.weight.mul_(depth**-0.5)


DIGITS = 5_000  # the shipped 28×28 digits: 4,000 to train on, 1,000 to test


def recipe_cost(r: Recipe) -> budget.Cost:
    """What one deep MLP of `r` costs to train (labs/core/budget.py)."""
    widths = [28 * 28] + [r.width] * r.depth + [10]
    kept = 2 + (2 if r.norm != "none" else 0)  # Linear out, activation out, (norm's two)
    params, flops, saved = budget.mlp(widths, r.batch_size, kept)
    return budget.Cost(
        params=params,
        activations=saved,
        steps=r.steps,
        step_flops=flops,
        step_ops=12 + (r.depth + 1) * (22 + (10 if r.norm != "none" else 0)),
        optimizer_states=1,  # momentum
        data=2 * DIGITS * 28 * 28,  # the shipped digits, and their standardized copy
        evaluation=1000 * r.width * 2 + PROBE * r.width * r.depth,  # test set; hooked probe
        wait=1 / r.per_second if r.per_second else 0.0,  # a watchable pace's wait between steps
    )


def shuffled_batches(n: int, batch_size: int, g: torch.Generator, device: torch.device):
    """Index tensors for batches forever: a fresh shuffle each epoch, sliced on the device."""
    per_epoch = max(1, n // batch_size)
    while True:
        order = torch.randperm(n, generator=g).to(device)
        for i in range(per_epoch):
            yield order[i * batch_size : (i + 1) * batch_size]


def train_digits(r: Recipe, device: torch.device):
    """SGD with momentum on the shipped digits, snapshots with every layer's statistics."""
    g = seed_everything(r.seed)
    X_train, y_train, X_test, y_test = digits(r.seed, device=device)
    model = build(r).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=r.learning_rate, momentum=0.9, foreach=True)
    cadence = Cadence(r.steps, max_snaps=60, min_seconds=0.05)
    batches = shuffled_batches(len(X_train), r.batch_size, g, device)
    step, watch = 0, LossWatch(explode=EXPLODES)
    for step in steps(r.steps, r.per_second):  # ends early on Stop
        batch = next(batches)
        loss = F.cross_entropy(model(X_train[batch]), y_train[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log(step, train_loss=loss)
        watch.see(loss=loss)
        if cadence.due(step):
            watch.check(step)
            yield _snapshot(model, r, step, loss.item(), X_train, X_test, y_test)
    yield Snapshot(step, r.steps, final=True, state_dict=cpu_state_dict(model))


@torch.no_grad()
def _snapshot(model, r, step, loss, X_train, X_test, y_test) -> Snapshot:
    """Gradient norms come from the step just taken; activations from a fixed probe batch.
    Hooks are attached for the probe only: on every training step they would cost ~10%."""
    acts, grads = recorded_layers(model)
    model.eval()
    with record_activations(acts) as latest:
        model(X_train[:PROBE])
    layers = layer_stats(acts, latest, grads, HIST_RANGE[r.activation])
    logits = model(X_test)
    model.train()
    norms = [layers[name]["grad_rms"] for name in acts]
    metrics = {
        "train_loss": loss,
        "test_loss": F.cross_entropy(logits, y_test).item(),
        "test_acc": (logits.argmax(1) == y_test).float().mean().item(),
        "first/last gradient": norms[0] / max(norms[-1], 1e-30),
    }
    return Snapshot(step, r.steps, metrics, layers, view={"distinct_units": distinct_units(model)})
