"""Chapter 7 — Convolutional networks.

A small CNN learns to read digits (8×8, the 28×28 MNIST subset that ships with the lab, or
full MNIST / Fashion-MNIST when present). The learner sees the first layer's filters, the
feature maps of any test image at every layer, the confusion matrix and the most confident
mistakes, and four Captum attributions side by side. A same-size MLP (as many weights) is one
click away, to see what weight sharing buys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from labs.core import attribution, budget, data
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.hooks import layer_stats, record_activations
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy

PREFERS_GPU = True
PROBE = 128  # test images used for per-layer statistics at each snapshot
# Test images a snapshot evaluates while the net trains (the last one: all of them). The whole
# test set at every snapshot cost a third of the default run; a quarter of it shows the same
# climb, and the number the chapter's questions read is the last snapshot's, on every image.
WATCHED_TEST_IMAGES = 250


@dataclass(frozen=True)
class Config:
    dataset: str = knob(
        "mnist_subset",
        "Dataset",
        "28×28 subset ships with the lab; full MNIST / Fashion-MNIST need the data directory or a download.",
        choices=data.IMAGE_SETS,
    )
    model: str = knob(
        "cnn", "Model", "A CNN, or an MLP with (about) as many weights.", choices=("cnn", "mlp")
    )
    conv_layers: int = knob(2, "Conv layers", "Each doubles the channels.", lo=1, hi=3, step=1)
    channels: int = knob(8, "Channels", "Filters in the first conv layer.", lo=2, hi=32, step=2)
    kernel_size: int = knob(3, "Kernel size", "Height and width of each filter.", choices=(3, 5))
    pooling: str = knob(
        "max", "Pooling", "Halve the image after each conv layer.", choices=("max", "avg", "none")
    )
    batchnorm: bool = knob(False, "BatchNorm", "Normalize each conv layer's outputs.")
    dropout: float = knob(0.0, "Dropout", "Before the classifier.", lo=0.0, hi=0.5, step=0.05)
    learning_rate: float = knob(3e-3, "Learning rate", "Adam's step size.", lo=1e-5, hi=1.0, log=True)
    epochs: int = knob(5, "Epochs", "Passes over the training images.", lo=1, hi=30, step=1)
    batch_size: int = knob(64, "Batch size", "Images per step.", lo=8, hi=512, step=8)
    train_size: int = knob(
        4000,
        "Training images (max)",
        "Caps the training set (full MNIST has 60,000).",
        lo=500,
        hi=60000,
        step=500,
    )
    seed: int = knob(0, "Seed", "Same seed, same run.", lo=0, hi=9999, step=1)


class ConvBlock(nn.Module):
    """Conv -> (BatchNorm) -> ReLU -> (pool); a ReLU module of its own, as DeepLift needs."""

    def __init__(self, c_in: int, c_out: int, cfg: Config, pool: bool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, cfg.kernel_size, padding=cfg.kernel_size // 2)
        self.norm = nn.BatchNorm2d(c_out) if cfg.batchnorm else nn.Identity()
        self.act = nn.ReLU()
        pools = {"max": nn.MaxPool2d(2), "avg": nn.AvgPool2d(2)}
        self.pool = pools[cfg.pooling] if pool and cfg.pooling != "none" else nn.Identity()

    def forward(self, x):
        return self.pool(self.act(self.norm(self.conv(x))))


class SmallCNN(nn.Module):
    def __init__(self, cfg: Config, side: int, n_classes: int = 10):
        super().__init__()
        blocks, c_in = [], 1
        for i in range(cfg.conv_layers):
            can_pool = side >= 2
            blocks.append(ConvBlock(c_in, cfg.channels * 2**i, cfg, can_pool))
            c_in = cfg.channels * 2**i
            side = side // 2 if can_pool and cfg.pooling != "none" else side
        self.blocks = nn.ModuleList(blocks)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(c_in * side * side, n_classes)

    def forward(self, x):  # (N, 1, H, W) -> (N, classes)
        for block in self.blocks:
            x = block(x)
        return self.head(self.drop(x.flatten(1)))


class SameSizeMLP(nn.Module):
    """One hidden layer, as wide as the weight budget of the matching CNN allows."""

    def __init__(self, n_in: int, budget: int, n_classes: int = 10):
        super().__init__()
        hidden = max(1, (budget - n_classes) // (n_in + 1 + n_classes))
        self.hidden = nn.Linear(n_in, hidden)
        self.act = nn.ReLU()
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x):
        return self.head(self.act(self.hidden(x.flatten(1))))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


SIZES = {"digits8": (8, 1437, 360), "mnist_subset": (28, 4000, 1000)}  # side, train, test
FULL = (28, 60000, 10000)


def cost(cfg: Config) -> budget.Cost:
    """Each conv layer's arithmetic and the maps it keeps for backward; the data on the device."""
    side, available, n_test = SIZES.get(cfg.dataset, FULL)
    n_train = min(available, cfg.train_size)
    batch = min(cfg.batch_size, n_train)
    params, flops, per_image, c_in, s = 0.0, 0.0, 0.0, 1, side
    for i in range(cfg.conv_layers if cfg.model == "cnn" else 0):
        c_out = cfg.channels * 2**i
        params += cfg.kernel_size**2 * c_in * c_out + c_out
        flops += 3 * 2 * cfg.kernel_size**2 * c_in * c_out * s * s * batch
        per_image += s * s * c_out * (3 + 2 * cfg.batchnorm)  # conv, ReLU, pool's indices (+ norm)
        if s >= 2 and cfg.pooling != "none":
            s //= 2
        c_in = c_out
    cnn_params = params + c_in * s * s * 10 + 10
    if cfg.model == "cnn":
        p, f, kept = budget.linear(c_in * s * s, 10, batch)
        params, flops = params + p, flops + f
        blocks = cfg.conv_layers
    else:  # as many weights as the CNN, in one hidden layer
        hidden = max(1, (cnn_params - 10) // (side * side + 11))
        params, flops, kept = budget.mlp([side * side, hidden, 10], batch)
        blocks = 1
    return budget.Cost(
        params=params,
        activations=per_image * batch + kept,
        steps=cfg.epochs * math.ceil(n_train / batch),
        step_flops=flops,
        step_ops=16 + (blocks + 1) * 28,
        data=(available + n_test) * side * side,  # the whole set is parsed and kept
        evaluation=min(1024, n_test) * (per_image / 3 + 10),
        kind="conv" if cfg.model == "cnn" else "dense",
    )


def build_model(cfg: Config, side: int) -> nn.Module:
    cnn = SmallCNN(cfg, side)
    return cnn if cfg.model == "cnn" else SameSizeMLP(side * side, n_params(cnn))


def load_model(cfg: Config, side: int, state_dict: dict) -> nn.Module:
    model = build_model(cfg, side)
    model.load_state_dict(state_dict)
    return model.eval()


def images(cfg: Config) -> data.ImageSet:
    return data.image_set(cfg.dataset, seed=cfg.seed, max_train=cfg.train_size)


def recorded_layers(model: nn.Module):
    if isinstance(model, SmallCNN):
        acts = {f"conv {i + 1}": b.act for i, b in enumerate(model.blocks)}
        grads = {f"conv {i + 1}": b.conv for i, b in enumerate(model.blocks)}
    else:
        acts, grads = {"hidden": model.act}, {"hidden": model.hidden}
    return acts | {"output": model.head}, grads | {"output": model.head}


@dataclass(frozen=True)
class Probe:
    """What every snapshot measures the net on, fixed for the run: the test set and its class
    names, where the hooks record, and the run's length."""

    X_test: torch.Tensor  # (N, 1, H, W)
    y_test: torch.Tensor  # (N,)
    classes: list[str]
    latest: dict[str, torch.Tensor]  # filled by record_activations: each layer's last output
    acts: dict[str, nn.Module]
    grads: dict[str, nn.Module]
    total: int  # steps in the run
    per_epoch: int  # steps in an epoch


def train(cfg: Config, device: torch.device):
    """Adam on cross-entropy over shuffled batches sliced on the device; ~40 snapshots."""
    check(cfg)
    g = seed_everything(cfg.seed)
    ds = images(cfg)
    X, y = ds.X_train.to(device), ds.y_train.to(device)
    X_test, y_test = ds.X_test.to(device), ds.y_test.to(device)
    model = build_model(cfg, X.shape[-1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    per_epoch = math.ceil(len(X) / cfg.batch_size)
    total = cfg.epochs * per_epoch
    cadence = Cadence(total, max_snaps=60, min_seconds=0.15)
    acts, grads = recorded_layers(model)
    notes = [ds.note] if ds.note else []
    notes.append(
        f"{cfg.model.upper()} with {n_params(model):,} weights on {len(X):,} training images ({ds.name})."
    )
    if len(X_test) > WATCHED_TEST_IMAGES:
        notes.append(
            f"While it trains, the test set's numbers are measured on {WATCHED_TEST_IMAGES} of its "
            f"{len(X_test):,} images (cheap to watch); the last point, on all of them."
        )
    recent, step = [], 0
    with record_activations(acts) as latest:
        probe = Probe(X_test, y_test, ds.classes, latest, acts, grads, total, per_epoch)
        watch = LossWatch()
        for step in steps(total):  # ends early on Stop
            if (step - 1) % per_epoch == 0:
                order = torch.randperm(len(X), generator=g).to(device)
            batch = order[((step - 1) % per_epoch) * cfg.batch_size :][: cfg.batch_size]
            loss = F.cross_entropy(model(X[batch]), y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            log(step, train_loss=loss)
            recent.append(loss.detach())
            if cadence.due(step):
                train_loss = torch.stack(recent).mean().item()
                recent = []
                watch.check(step, loss=train_loss)
                yield _snapshot(model, probe, step, train_loss, notes)
    final = Snapshot(step, total, final=True, state_dict=cpu_state_dict(model))
    final.view = {"mistakes": confident_mistakes(model, X_test, y_test)}
    yield final


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, chunk: int = 1024):
    """Logits over a whole set in chunks (full MNIST's test set does not fit one batch on CPU)."""
    model.eval()
    logits = torch.cat([model(X[i : i + chunk]) for i in range(0, len(X), chunk)])
    model.train()
    return logits


def _snapshot(model: nn.Module, probe: Probe, step: int, train_loss: float, notes: list[str]) -> Snapshot:
    X_test, y_test, classes = probe.X_test, probe.y_test, probe.classes
    if step < probe.total:  # while it trains: a fixed part of the test set
        X_test, y_test = X_test[:WATCHED_TEST_IMAGES], y_test[:WATCHED_TEST_IMAGES]
    logits = evaluate(model, X_test)
    with torch.no_grad():
        model.eval()
        model(X_test[:PROBE])  # per-layer statistics over a fixed probe batch
        model.train()
    layers = layer_stats(probe.acts, probe.latest, probe.grads, hist_range=(-0.5, 4.0))
    pred = logits.argmax(1)
    confusion = torch.bincount(y_test * len(classes) + pred, minlength=len(classes) ** 2)
    metrics = {
        "epoch": step / probe.per_epoch,
        "train_loss": train_loss,
        "test_loss": F.cross_entropy(logits, y_test).item(),
        "test_acc": (pred == y_test).float().mean().item(),
    }
    view = {
        "confusion": confusion.reshape(len(classes), -1).cpu().numpy(),
        "classes": classes,
        "filters": first_filters(model),
        "weights": n_params(model),
    }
    return Snapshot(step, probe.total, metrics, layers, view, notes=notes)


def first_filters(model: nn.Module):
    """The first layer's weights as pictures: (C, k, k), or (hidden, H, W) for the MLP."""
    if isinstance(model, SmallCNN):
        return to_numpy(model.blocks[0].conv.weight[:, 0])
    side = int(math.isqrt(model.hidden.in_features))
    return to_numpy(model.hidden.weight[:16].reshape(-1, side, side))


def confident_mistakes(model: nn.Module, X: torch.Tensor, y: torch.Tensor, k: int = 12) -> dict:
    """The k wrong predictions the model was surest of, with their images."""
    probs = F.softmax(evaluate(model, X), dim=1)
    conf, pred = probs.max(1)
    wrong = (pred != y).nonzero().flatten()
    top = wrong[conf[wrong].argsort(descending=True)[:k]]
    return {
        "index": top.cpu().numpy(),
        "images": to_numpy(X[top, 0]),
        "true": y[top].cpu().numpy(),
        "pred": pred[top].cpu().numpy(),
        "confidence": conf[top].cpu().numpy(),
    }


@torch.no_grad()
def feature_maps(model: nn.Module, image: torch.Tensor) -> list:
    """Each conv layer's output for one image (1, 1, H, W): a list of (C, h, w) arrays."""
    if not isinstance(model, SmallCNN):
        return []
    acts, _ = recorded_layers(model)
    acts.pop("output")
    with record_activations(acts) as latest:
        model.eval()(image)
    return [to_numpy(latest[name][0]) for name in acts]


@torch.no_grad()
def predict(model: nn.Module, image: torch.Tensor):
    """Class probabilities for one image (1, 1, H, W): a NumPy array."""
    return F.softmax(model.eval()(image), dim=1)[0].numpy()


def explain(model: nn.Module, image: torch.Tensor, target: int) -> dict:
    """Saliency, Integrated Gradients (with delta), Occlusion and Grad-CAM for one image and
    class, each as a signed map scaled the way Captum draws it."""
    model.eval()
    with torch.no_grad():
        probs = F.softmax(model(image), dim=1)[0].numpy()
    ig, delta = attribution.integrated_gradients(model, image, target)
    side = image.shape[-1]
    window = max(2, side // 7)
    maps = {
        "Saliency": attribution.saliency(model, image, target),
        "Integrated Gradients": ig,
        "Occlusion": attribution.occlusion(model, image, target, window, max(1, window // 2)),
    }
    if isinstance(model, SmallCNN):
        maps["Grad-CAM"] = attribution.grad_cam(model, model.blocks[-1].act, image, target)
    return {
        "maps": {k: attribution.normalize_attribution(v) for k, v in maps.items()},
        "ig_delta": delta,
        "probs": probs,
    }


def _accuracy(view) -> float:
    return view.history[-1]["test_acc"] if view.history else 0.0


QUESTIONS = [
    Question(
        "An MLP with as many weights as the default CNN trains on the same 4,000 digits. "
        "Will it reach 93% test accuracy like the CNN?",
        ("yes", "no"),
        {"model": "mlp", "dataset": "mnist_subset"},
        lambda v: ("yes" if _accuracy(v) >= 0.93 else "no", f"The MLP reached {_accuracy(v):.1%}."),
        "With ~9k weights for 784 pixels, the MLP affords only ~11 hidden units; the CNN reuses "
        "each 3×3 filter at every position.",
    ),
    Question(
        "Without pooling, does the CNN need more weights in its classifier layer?",
        ("yes", "no"),
        {"pooling": "none", "model": "cnn"},
        lambda v: (
            "yes" if v.view.get("weights", 0) > 9098 else "no",
            f"It has {v.view.get('weights', 0):,} weights (9,098 with max pooling).",
        ),
        "Pooling shrinks the last feature maps 4×, and the classifier sees every value of them.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
