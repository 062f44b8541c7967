"""Chapter 8's pre-trained nets and the digits they meet: a small CNN pre-trained on digits 0–4
(shifted and tilted at every step), kept per process so the next run and the sweep start
adapting at once; torchvision's resnet18 when an operator put its ImageNet weights on disk;
digits 5–9 as a careless scanner hands them over, with as few labels per class as asked.
labs/transfer.py adapts them three ways."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from labs.core import budget, data
from labs.core.control import log, steps, stop_requested
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict
from labs.regularization import augment

SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)  # pre-train on the first, adapt to the second
PRETRAIN_LOSS = "pre-training: train_loss"
RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's ImageNet weights, if an operator put them on disk


# ---------------------------------------------------------------- the nets


class Backbone(nn.Module):
    """Three conv stages (c, 2c, 4c channels), each halving the image: 28×28 digits in, the
    last 3×3 maps out as 36c features (kept in place: where a stroke is matters for a digit)."""

    def __init__(self, channels: int):
        super().__init__()
        widths = (1, channels, 2 * channels, 4 * channels)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:]))
        self.acts = nn.ModuleList(nn.ReLU() for _ in self.convs)  # own modules: hooks and Grad-CAM
        self.features = widths[-1] * 3 * 3

    def forward(self, x):
        for conv, act in zip(self.convs, self.acts):
            x = F.max_pool2d(act(conv(x)), 2)
        return x.flatten(1)


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.features, n_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


class ResNet18Backbone(nn.Module):
    """torchvision's resnet18 as a feature extractor for 28×28 greyscale digits: the image is
    resized to 64×64 and repeated over the three colour channels it was trained on."""

    def __init__(self, state_dict: dict):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18()
        net.load_state_dict(state_dict)
        net.fc = nn.Identity()
        self.net = net
        self.features = 512
        self.convs = [net.layer1, net.layer2, net.layer3]  # the stages CKA and Grad-CAM look at
        self.acts = [net.layer1, net.layer2, net.layer4]

    def forward(self, x):
        x = F.interpolate(x, size=64, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
        return self.net((x - 0.45) / 0.226)


def resnet18_weights() -> Path | None:
    """The ImageNet resnet18 file where torchvision keeps it, or in the lab's data directory."""
    for folder in (Path(torch.hub.get_dir()) / "checkpoints", data.data_dir()):
        if (folder / RESNET18_FILE).exists():
            return folder / RESNET18_FILE
    return None


def fresh_resnet_state(seed: int, prefixed: bool = False) -> dict:
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    state = resnet18().state_dict()
    return {f"net.{k}": v for k, v in state.items()} if prefixed else state


# ---------------------------------------------------------------- the digits


def digits(dataset: str = "mnist_subset", seed: int = 0) -> data.ImageSet:
    return data.image_set(dataset, seed=seed)


def as_scanned(X: torch.Tensor, seed: int) -> torch.Tensor:
    """Digits the way a careless scanner hands them over: each one shifted up to ±3 px and
    tilted up to ±15°, once and for all. A net must learn that variation; with few labels,
    from a handful of examples, unless it learned it before on other digits."""
    return augment(X, ("shift", "rotate"), torch.Generator().manual_seed(seed + 20_000))


def target_digits(seed: int):
    """Digits 5–9 as scanned, relabelled 0–4: (training pool, test set)."""
    ds = digits(seed=seed)
    pool = of_classes(as_scanned(ds.X_train, seed), ds.y_train, TARGET)
    test = of_classes(as_scanned(ds.X_test, seed + 1), ds.y_test, TARGET)
    return pool, test


def of_classes(X: torch.Tensor, y: torch.Tensor, classes: tuple[int, ...]):
    """The images of some classes, relabelled 0, 1, …, in the order given."""
    keep = torch.isin(y, torch.tensor(classes))
    relabel = torch.full((10,), -1, dtype=torch.long)
    relabel[list(classes)] = torch.arange(len(classes))
    return X[keep], relabel[y[keep]]


def labelled(X: torch.Tensor, y: torch.Tensor, per_class: int, seed: int):
    """`per_class` training examples of each class, picked with the run's seed (as many as
    there are, if fewer): what a small labelled set looks like."""
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(int(y.max()) + 1):
        idx = (y == c).nonzero().flatten()
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    chosen = torch.cat(picks)
    return X[chosen], y[chosen]


# ---------------------------------------------------------------- pre-training

_PRETRAINED: dict[tuple, tuple[dict, tuple]] = {}  # (channels, steps, seed) -> (weights, curve)


def pretraining(channels: int, pretrain_steps: int, seed: int, device: torch.device):
    """Train a small CNN on all of digits 0–4, yielding snapshots of its loss; returns (backbone
    weights on the CPU, its curve), or None when stopped. Kept per process: the next run with
    the same settings starts adapting at once, and so does the sweep."""
    key = (channels, pretrain_steps, seed)
    if key in _PRETRAINED:
        return _PRETRAINED[key]
    ds = digits(seed=seed)
    X, y = of_classes(ds.X_train, ds.y_train, SOURCE)
    X, y = X.to(device), y.to(device)
    g = torch.Generator().manual_seed(seed + 10_000)  # its own stream: the adaptation's is untouched
    torch.manual_seed(seed + 10_000)
    model = Classifier(Backbone(channels), len(SOURCE)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    cadence = Cadence(pretrain_steps, max_snaps=30, min_seconds=0.1)
    xs, losses = [], []
    for step in steps(pretrain_steps):
        batch = torch.randint(0, len(X), (64,), generator=g).to(device)
        shaken = augment(X[batch], ("shift", "rotate"), g)  # fresh shifts and tilts at every step
        loss = F.cross_entropy(model(shaken), y[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log(step, **{PRETRAIN_LOSS: loss})  # the dense curve, every step
        if cadence.due(step):
            xs.append(step)
            losses.append(loss.item())
            metrics = {PRETRAIN_LOSS: losses[-1]}
            yield Snapshot(step, pretrain_steps, metrics, view={"phase": "pre-training on digits 0–4"})
    if stop_requested():
        return None
    if len(_PRETRAINED) >= 4:
        _PRETRAINED.pop(next(iter(_PRETRAINED)))
    _PRETRAINED[key] = (cpu_state_dict(model.backbone), (tuple(xs), tuple(losses)))
    return _PRETRAINED[key]


def already_pretrained(channels: int, pretrain_steps: int, seed: int) -> bool:
    """Whether this process keeps that backbone: a run then says it skipped pre-training."""
    return (channels, pretrain_steps, seed) in _PRETRAINED


def pretrained(channels: int, pretrain_steps: int, seed: int) -> tuple[dict, tuple]:
    """The pre-trained backbone's weights and curve, training it here if need be (tests, sweep)."""
    gen = pretraining(channels, pretrain_steps, seed, torch.device("cpu"))
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value


# ---------------------------------------------------------------- what pre-training costs


def backbone_cost(channels: int, batch: float, side: int = 28) -> tuple[float, float, float]:
    """(weights, step flops, floats kept for backward) of the small backbone on `batch` images."""
    params = flops = kept = 0.0
    c_in = 1
    for c in (channels, 2 * channels, 4 * channels):
        params += 9 * c_in * c + c
        flops += 3 * 2 * 9 * c_in * c * side * side * batch
        kept += 2.5 * c * side * side * batch  # conv out, ReLU out, a quarter for the pool
        c_in, side = c, side // 2
    return params, flops, kept


def with_pretraining(cost: budget.Cost, channels: int, pretrain_steps: int) -> budget.Cost:
    """Add pre-training's work, spread over the run's own steps: a time estimate then counts it
    once, and the budget's "default number of steps" stays the adaptation's."""
    params, flops, kept = backbone_cost(channels, 64)
    share = pretrain_steps / max(cost.steps, 1)
    return dataclasses.replace(
        cost,
        activations=max(cost.activations, kept),
        step_flops=cost.step_flops + flops * share,
        step_ops=cost.step_ops + 60 * share,
    )
