"""Chapter 2 — Neural network playground.

A fully connected net learns a 2-D task: two classes (moons, circles, spiral, xor, blobs), one
logit through a sigmoid, or three to five (blobs, spirals, quadrants, pinwheel), a logit per
class through a softmax, with cross-entropy or squared error on the probabilities. The
learner sees the decision boundary form, what every hidden unit responds to, how gradients
flow from layer to layer, how many units die, and, for one chosen point, which input features
pushed its prediction (Integrated Gradients). Everything TensorFlow Playground offers, plus
BatchNorm, dropout and a choice of optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.nn import functional as F

from labs.core import budget, data, pacing
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.hooks import layer_stats, record_activations
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy

PREFERS_GPU = False  # a 16-unit MLP is overhead-bound: the CPU is as fast as a GPU
FEATURES = {  # URL-safe key -> (label, function of x and y in [-1.5, 1.5])
    "x": ("x", lambda x, y: x),
    "y": ("y", lambda x, y: y),
    "x2": ("x²", lambda x, y: x * x),
    "y2": ("y²", lambda x, y: y * y),
    "xy": ("x·y", lambda x, y: x * y),
    "sinx": ("sin(πx)", lambda x, y: torch.sin(math.pi * x)),
    "siny": ("sin(πy)", lambda x, y: torch.sin(math.pi * y)),
}
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
LOSSES = ("cross_entropy", "squared_error")
HIST_RANGE = {"relu": (-0.5, 3.0), "gelu": (-0.5, 3.0), "tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}
EXTENT = 1.5  # the plane drawn is [-EXTENT, EXTENT]²
GRID = 40  # decision boundary and neuron maps are GRID x GRID
# The boundary is the picture a learner watches move: up to 30 snapshots a second (their cost
# keeps them fewer on a slow machine: labs/core/snapshot.py Cadence), alone or in a batch.
MAX_SNAPS, MIN_SNAP_SECONDS = 240, 1 / 30


@dataclass(frozen=True)
class Config:
    dataset: str = knob(
        "spiral",
        "Dataset",
        "The 2-D task: two classes to separate, or three to five (a softmax over one logit per class).",
        choices=data.TWO_D_SETS + tuple(data.MULTI_CLASS_SETS),
    )
    noise: float = knob(0.1, "Noise", "How much the points are jittered.", lo=0.0, hi=0.5, step=0.05)
    points: int = knob(400, "Points", "How many points in all.", lo=100, hi=2000, step=100)
    train_fraction: float = knob(
        0.5, "Training share", "The rest is held out for testing.", lo=0.1, hi=0.9, step=0.1
    )
    features: tuple = knob(
        ("x", "y"),
        "Input features",
        "What the first layer sees.",
        choices=tuple(FEATURES),
        multi=True,
        labels={k: label for k, (label, _) in FEATURES.items()},
    )
    hidden_layers: int = knob(2, "Hidden layers", "0 makes a linear model.", lo=0, hi=6, step=1)
    units: int = knob(8, "Units per layer", "Width of every hidden layer.", lo=1, hi=16, step=1)
    activation: str = knob(
        "relu", "Activation", "The non-linearity after each layer.", choices=tuple(ACTIVATIONS)
    )
    loss: str = knob(
        "cross_entropy",
        "Loss",
        "Cross-entropy of the probabilities, or their squared distance from the one-hot label.",
        choices=LOSSES,
        labels={"cross_entropy": "cross-entropy", "squared_error": "squared error"},
    )
    optimizer: str = knob(
        "adam", "Optimizer", "How gradients become updates.", choices=("sgd", "momentum", "adam")
    )
    learning_rate: float = knob(0.02, "Learning rate", "Step size.", lo=1e-4, hi=3.0, log=True)
    batch_size: int = knob(16, "Batch size", "Points per gradient step.", lo=1, hi=256, step=1)
    regularization: str = knob(
        "none", "Regularization", "Penalty on the weights.", choices=("none", "L1", "L2")
    )
    reg_rate: float = knob(1e-3, "Regularization rate", "Strength of the penalty.", lo=1e-5, hi=1.0, log=True)
    batchnorm: bool = knob(False, "BatchNorm", "Normalize each layer's pre-activations.")
    dropout: float = knob(
        0.0, "Dropout", "Share of units silenced at each training step.", lo=0.0, hi=0.5, step=0.05
    )
    epochs: int = knob(150, "Epochs", "Passes over the training points.", lo=5, hi=1000, step=5)
    speed: str = pacing.speed_knob(
        watchable=f"watchable ({pacing.WATCHABLE_EPOCHS_PER_SECOND:.0f} epochs a second)"
    )
    seed: int = knob(0, "Seed", "Same seed, same data, same start, same run.", lo=0, hi=9999, step=1)


class Block(nn.Module):
    """Linear -> (BatchNorm) -> activation -> (Dropout): one hidden layer, its parts named."""

    def __init__(self, n_in: int, n_out: int, cfg: Config):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.norm = nn.BatchNorm1d(n_out) if cfg.batchnorm else nn.Identity()
        self.act = ACTIVATIONS[cfg.activation]()
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def forward(self, x):
        return self.drop(self.act(self.norm(self.linear(x))))


class PlaygroundNet(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        widths = [len(cfg.features)] + [cfg.units] * cfg.hidden_layers
        self.blocks = nn.ModuleList(Block(a, b, cfg) for a, b in zip(widths, widths[1:]))
        self.out = nn.Linear(widths[-1], outputs(cfg))

    def forward(self, x):  # (N, features) -> (N, 1)
        for block in self.blocks:
            x = block(x)
        return self.out(x)


def outputs(cfg: Config) -> int:
    """Logits the net ends in: one for two classes (P(class 1) = sigmoid(logit)), else one per
    class (P = softmax(logits))."""
    classes = data.classes_of(cfg.dataset)
    return 1 if classes == 2 else classes


def objective(cfg: Config, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The training loss of logits (N, outputs) against labels (N,): cross-entropy, or the
    squared distance between the probabilities and the one-hot label (summed over classes;
    with one logit, (p - y)²)."""
    if logits.shape[1] == 1:
        z = logits.squeeze(1)
        if cfg.loss == "cross_entropy":
            return F.binary_cross_entropy_with_logits(z, targets)
        return (torch.sigmoid(z) - targets).pow(2).mean()
    if cfg.loss == "cross_entropy":
        return F.cross_entropy(logits, targets)
    one_hot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
    return (logits.softmax(1) - one_hot).pow(2).sum(1).mean()


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """The class each row of logits (N, outputs) picks: (N,) long."""
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(N, classes): with one logit, (1 - p, p)."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return logits.softmax(1)


def _train_and_batch(cfg: Config) -> tuple[int, int]:
    """Training points (as data.split cuts them) and points a step."""
    n_train = max(1, min(cfg.points - 1, round(cfg.points * cfg.train_fraction)))
    return n_train, min(cfg.batch_size, n_train)


def steps_per_epoch(cfg: Config) -> int:
    n_train, batch = _train_and_batch(cfg)
    return math.ceil(n_train / batch)


def watchable_rate(cfg: Config) -> float:
    """WATCHABLE_EPOCHS_PER_SECOND epochs a second, in steps, as TensorFlow Playground draws an
    epoch a frame (a default run ~6 s instead of half a second)."""
    return pacing.WATCHABLE_EPOCHS_PER_SECOND * steps_per_epoch(cfg)


def steps_per_second(cfg: Config) -> float | None:
    """The run's pace: `watchable_rate`, or None at full speed."""
    return pacing.per_second(cfg.speed, watchable_rate(cfg))


def cost(cfg: Config) -> budget.Cost:
    """Tiny weights, many small steps: the time is all per-operation overhead."""
    _, batch = _train_and_batch(cfg)
    extras = int(cfg.batchnorm) + int(cfg.dropout > 0)
    widths = [len(cfg.features)] + [cfg.units] * cfg.hidden_layers + [outputs(cfg)]
    params, flops, saved = budget.mlp(widths, batch, saved_per_unit=2 + 2 * extras)
    layers = cfg.hidden_layers + 1
    unpaced = budget.Cost(
        params=params,
        activations=saved,
        steps=cfg.epochs * steps_per_epoch(cfg),
        step_flops=flops,
        step_ops=14 + layers * (16 + 8 * extras) + (layers * 4 if cfg.regularization != "none" else 0),
        data=cfg.points * (2 + len(cfg.features)) + GRID * GRID * (len(cfg.features) + outputs(cfg)),
        evaluation=(GRID * GRID + cfg.points) * cfg.units * layers * 2,
    )
    return pacing.paced(unpaced, cfg.speed, watchable_rate(cfg))


def build_model(cfg: Config) -> PlaygroundNet:
    return PlaygroundNet(cfg)


def load_model(cfg: Config, state_dict: dict) -> PlaygroundNet:
    model = build_model(cfg)
    model.load_state_dict(state_dict)
    return model.eval()


def featurize(points: torch.Tensor, features: tuple) -> torch.Tensor:
    """(N, 2) points -> (N, len(features)) inputs, in the order the learner ticked them."""
    x, y = points[:, 0], points[:, 1]
    return torch.stack([FEATURES[f][1](x, y) for f in features], dim=1)


def grid_points() -> torch.Tensor:
    """GRID² points covering the plane, row by row (y outer, x inner): (GRID², 2)."""
    axis = torch.linspace(-EXTENT, EXTENT, GRID)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], dim=1)


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate)
    momentum = 0.9 if cfg.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=momentum)


def weight_penalty(cfg: Config, model: nn.Module) -> torch.Tensor | float:
    """L1 or L2 on the weights (not the biases), as TensorFlow Playground does."""
    if cfg.regularization == "none":
        return 0.0
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    power = 1 if cfg.regularization == "L1" else 2
    return cfg.reg_rate * sum(w.abs().pow(power).sum() for w in weights)


def recorded_layers(model: PlaygroundNet):
    """Activations are read after each non-linearity; gradients from the Linear feeding it."""
    acts = {f"layer {i + 1}": b.act for i, b in enumerate(model.blocks)} | {"output": model.out}
    grads = {f"layer {i + 1}": b.linear for i, b in enumerate(model.blocks)} | {"output": model.out}
    return acts, grads


@dataclass(frozen=True)
class Probe:
    """What every snapshot measures the net on, fixed for the run: both splits as features with
    their targets, the grid over the plane, where the hooks record, and the points to draw."""

    train: tuple[torch.Tensor, torch.Tensor]  # (features (N, F), targets (N,))
    test: tuple[torch.Tensor, torch.Tensor]
    grid: torch.Tensor  # (GRID², F)
    latest: dict[str, torch.Tensor]  # filled by record_activations: each layer's last output
    acts: dict[str, nn.Module]
    grads: dict[str, nn.Module]
    points: dict = field(default_factory=dict)  # plain arrays for the boundary chart


def train(cfg: Config, device: torch.device):
    """Train on the chosen task, yielding ~60 snapshots; the last carries the weights. One run as
    one nn.Module. On a server, runs of one shape train as one batch instead (its `stack`,
    labs/playground_stacked.py): each member's run is this one's up to float rounding."""
    check(cfg)
    run = _prepare(cfg, device)
    model, g, (F_train, t_train) = run.model, run.generator, run.probe.train
    opt = make_optimizer(cfg, model.parameters())
    n = len(F_train)
    per_epoch = math.ceil(n / min(cfg.batch_size, n))
    total = cfg.epochs * per_epoch
    cadence = Cadence(total, max_snaps=MAX_SNAPS, min_seconds=MIN_SNAP_SECONDS)
    step = 0
    with record_activations(run.probe.acts) as latest:
        probe = replace(run.probe, latest=latest)
        watch = LossWatch()
        for step in steps(total, steps_per_second(cfg)):  # ends early on Stop
            if (step - 1) % per_epoch == 0:
                order = torch.randperm(n, generator=g).to(device)  # a fresh shuffle each epoch
            batch = order[((step - 1) % per_epoch) * cfg.batch_size :][: cfg.batch_size]
            loss = objective(cfg, model(F_train[batch]), t_train[batch])
            opt.zero_grad(set_to_none=True)
            (loss + weight_penalty(cfg, model)).backward()
            opt.step()
            log(step, train_loss=loss)
            if cadence.due(step):
                watch.check(step, loss=loss)
                yield _snapshot(model, probe, cfg, step, total)
    yield Snapshot(step, total, final=True, state_dict=cpu_state_dict(model))


@dataclass
class _Run:
    """One run's start: its net (initialised from its seed), its shuffling generator, and the
    probe its snapshots measure."""

    model: PlaygroundNet
    generator: torch.Generator
    probe: Probe


def _prepare(cfg: Config, device: torch.device) -> _Run:
    g = seed_everything(cfg.seed)
    X, y = data.two_d(cfg.dataset, cfg.points, cfg.noise, cfg.seed)
    X_train, y_train, X_test, y_test = data.split(X, y, cfg.train_fraction, cfg.seed)
    F_train, F_test = (
        featurize(X_train, cfg.features).to(device),
        featurize(X_test, cfg.features).to(device),
    )
    F_grid = featurize(grid_points(), cfg.features).to(device)
    # targets: the label as a float for one logit's BCE, the class index for a softmax's
    kind = torch.float32 if outputs(cfg) == 1 else torch.long
    t_train, t_test = y_train.to(device, kind), y_test.to(device, kind)
    model = build_model(cfg).to(device)
    acts, grads = recorded_layers(model)
    points = {
        "X_train": X_train.numpy(),
        "y_train": y_train.numpy(),
        "X_test": X_test.numpy(),
        "y_test": y_test.numpy(),
        "extent": EXTENT,  # the plane the boundary grid covers: [-EXTENT, EXTENT]²
        "classes": data.classes_of(cfg.dataset),
    }
    probe = Probe((F_train, t_train), (F_test, t_test), F_grid, {}, acts, grads, points)
    return _Run(model, g, probe)


@torch.no_grad()
def _snapshot(model: PlaygroundNet, probe: Probe, cfg: Config, step: int, total: int) -> Snapshot:
    (F_train, t_train), (F_test, t_test) = probe.train, probe.test
    model.eval()
    train_logits = model(F_train)  # fills `latest` with whole-training-set outputs
    layers = layer_stats(probe.acts, probe.latest, probe.grads, HIST_RANGE[cfg.activation])
    test_logits = model(F_test)
    grid_logits = model(probe.grid)  # `latest` now holds every unit over the plane
    neuron_maps = [
        to_numpy(probe.latest[name].T.reshape(-1, GRID, GRID))  # (units, GRID, GRID)
        for name in probe.acts
        if name != "output"
    ]
    model.train()
    metrics = {
        "train_loss": objective(cfg, train_logits, t_train).item(),
        "test_loss": objective(cfg, test_logits, t_test).item(),
        "train_acc": (predictions(train_logits) == t_train.long()).float().mean().item(),
        "test_acc": (predictions(test_logits) == t_test.long()).float().mean().item(),
    }
    probs = boundary_of(grid_logits)
    return Snapshot(
        step,
        total,
        metrics,
        layers,
        view={"boundary": to_numpy(probs), "neurons": neuron_maps, **probe.points},
    )


def boundary_of(grid_logits: torch.Tensor) -> torch.Tensor:
    """What the boundary chart draws from the grid's logits (GRID², outputs): P(class 1) as
    (GRID, GRID) for one logit, else every class's probability as (classes, GRID, GRID); rows
    run along y."""
    if grid_logits.shape[1] == 1:
        return torch.sigmoid(grid_logits).reshape(GRID, GRID)
    return grid_logits.softmax(1).T.reshape(-1, GRID, GRID)


def _final_accuracy(view) -> float:
    return view.history[-1]["test_acc"] if view.history else 0.0


QUESTIONS = [
    Question(
        "On the spiral with no hidden layer (a linear model), will test accuracy pass 70%?",
        ("yes", "no"),
        {"dataset": "spiral", "hidden_layers": 0, "features": ("x", "y")},
        lambda v: ("yes" if _final_accuracy(v) > 0.7 else "no", f"Test accuracy: {_final_accuracy(v):.0%}."),
        "One layer draws one straight line; two interleaved arms need a curved boundary.",
    ),
    Question(
        "Still no hidden layer, but now the inputs include x² and y². Can it fit the circles "
        "(above 90% test accuracy)?",
        ("yes", "no"),
        {"dataset": "circles", "hidden_layers": 0, "features": ("x", "y", "x2", "y2")},
        lambda v: ("yes" if _final_accuracy(v) > 0.9 else "no", f"Test accuracy: {_final_accuracy(v):.0%}."),
        "With x² and y² as inputs, a circle is a straight line in feature space: "
        "features can do what layers would otherwise have to learn.",
    ),
]


def _stacking_key(cfg: Config):
    from labs.playground_stacked import stacking_key  # it builds on this module

    return stacking_key(cfg)


def _stack(device: torch.device):
    from labs.playground_stacked import Stack

    return Stack(device)


# Learners' runs of one shape train as one batch (labs/core/batches.py), in a Stack.
EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU, _stacking_key, _stack)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
