"""Chapter 8 — Modern CNNs & transfer learning.

Three experiments: two on the 28×28 digits, one on the 8×8 digits.

Blocks: a plain stack of convolutions, the same stack with residual connections, and a
DenseNet-style stack (each layer sees every earlier layer's maps), at about equal weight
counts, side by side under one seed. The learner sees each one's gradient per layer: the deep
plain stack's first layers hear little of the loss, the skip paths carry it down.

Transfer: a small CNN is pre-trained on digits 0–4, then adapted to digits 5–9 with only a
few labelled examples per class, three ways side by side: its backbone frozen under a new
head, the whole net fine-tuned (the backbone at a lower learning rate), and the same net
trained from scratch. A sweep over labels per class shows where transfer matters; linear CKA
shows which layers fine-tuning changed; Grad-CAM shows what the net looks at before and after.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from labs.core import attribution, budget, data
from labs.core.compare import metric, side_by_side
from labs.core.config import check, knob
from labs.core.control import log, steps, stop_requested
from labs.core.device import seed_everything
from labs.core.failures import Diverged
from labs.core.hooks import layer_stats, record_activations
from labs.core.questions import Question
from labs.core.runner import Experiment
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict
from labs.regularization import augment

PREFERS_GPU = True
SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)  # pre-train on the first, adapt to the second
WAYS = {
    "frozen": "frozen backbone",
    "finetune": "fine-tuned",
    "scratch": "from scratch",
}
STACKS = {"plain": "plain", "residual": "residual", "dense": "dense"}
LABEL_POINTS = ("5", "10", "20", "50", "100", "200", "500")  # text: a link lists them
PRETRAIN_LOSS = "pre-training: train_loss"
PROBE = 128  # test images for CKA (its Gram matrices are PROBE × PROBE)
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


# ---------------------------------------------------------------- configs and costs


@dataclass(frozen=True)
class Config:
    labels_per_class: int = knob(
        20, "Labelled examples per class", "Of each digit 5–9, for training.", lo=5, hi=500, step=5
    )
    ways: tuple = knob(
        tuple(WAYS),
        "Compare",
        "Each starts from the same new head, on the same batches.",
        choices=tuple(WAYS),
        multi=True,
        labels=WAYS,
    )
    backbone: str = knob(
        "small_cnn",
        "Backbone",
        "A small CNN pre-trained here on digits 0–4, or torchvision's resnet18 (ImageNet) "
        "when its weights are on disk.",
        choices=("small_cnn", "resnet18"),
    )
    channels: int = knob(8, "Channels", "Of the first conv stage (then 2×, 4×).", lo=4, hi=32, step=4)
    pretrain_steps: int = knob(
        800, "Pre-training steps", "On all of digits 0–4 (kept for the next run).", lo=50, hi=3000, step=50
    )
    steps: int = knob(150, "Steps", "Adaptation steps for each way.", lo=10, hi=3000, step=10)
    learning_rate: float = knob(
        3e-3, "Learning rate", "Adam's step size for the head.", lo=1e-5, hi=0.1, log=True
    )
    backbone_lr: float = knob(
        0.1, "Backbone LR (fine-tuning)", "× the head's: small steps keep what pre-training learned.",
        lo=0.01, hi=1.0, log=True,
    )  # fmt: skip
    batch_size: int = knob(32, "Batch size", "Images per step.", lo=8, hi=256, step=8)
    seed: int = knob(0, "Seed", "Same seed, same examples, same head, same run.", lo=0, hi=9999, step=1)


@dataclass(frozen=True)
class SweepConfig:
    points: tuple = knob(
        ("5", "10", "20", "100", "500"),
        "Labels per class",
        "Each point trains the three ways afresh.",
        choices=LABEL_POINTS,
        multi=True,
    )
    channels: int = knob(8, "Channels", "Of the first conv stage (then 2×, 4×).", lo=4, hi=32, step=4)
    pretrain_steps: int = knob(800, "Pre-training steps", "On digits 0–4.", lo=50, hi=3000, step=50)
    steps: int = knob(150, "Steps", "For each way at each point.", lo=20, hi=2000, step=10)
    learning_rate: float = knob(
        3e-3, "Learning rate", "Adam's step size for the head.", lo=1e-5, hi=0.1, log=True
    )
    backbone_lr: float = knob(0.1, "Backbone LR (fine-tuning)", "× the head's.", lo=0.01, hi=1.0, log=True)
    batch_size: int = knob(32, "Batch size", "Images per step.", lo=8, hi=256, step=8)
    seed: int = knob(0, "Seed", "Same seed, same examples, same run.", lo=0, hi=9999, step=1)


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


def _backbone_cost(channels: int, batch: float, side: int = 28) -> tuple[float, float, float]:
    """(weights, step flops, floats kept for backward) of the small backbone on `batch` images."""
    params = flops = kept = 0.0
    c_in = 1
    for c in (channels, 2 * channels, 4 * channels):
        params += 9 * c_in * c + c
        flops += 3 * 2 * 9 * c_in * c * side * side * batch
        kept += 2.5 * c * side * side * batch  # conv out, ReLU out, a quarter for the pool
        c_in, side = c, side // 2
    return params, flops, kept


def _with_pretraining(cost: budget.Cost, channels: int, pretrain_steps: int) -> budget.Cost:
    """Add pre-training's work, spread over the run's own steps: a time estimate then counts it
    once, and the budget's "default number of steps" stays the adaptation's."""
    params, flops, kept = _backbone_cost(channels, 64)
    share = pretrain_steps / max(cost.steps, 1)
    return dataclasses.replace(
        cost,
        activations=max(cost.activations, kept),
        step_flops=cost.step_flops + flops * share,
        step_ops=cost.step_ops + 60 * share,
    )


def cost(cfg: Config) -> budget.Cost:
    """Pre-training (once per process and seed), then each way in lockstep; resnet18 at 64×64."""
    if cfg.backbone == "resnet18" and resnet18_weights() is not None:
        p, f, kept = 11.2e6, 3 * 0.15e9 * cfg.batch_size, 2.5e5 * cfg.batch_size
        one = budget.Cost(p, kept, cfg.steps, f, 200, data=5000 * 28 * 28)
        return budget.total(one for _ in cfg.ways)
    p, f, kept = _backbone_cost(cfg.channels, cfg.batch_size)
    one = budget.Cost(
        p, kept, cfg.steps, f, 70, data=5000 * 28 * 28, evaluation=1000 * 28 * 28 * cfg.channels
    )
    return _with_pretraining(budget.total(one for _ in cfg.ways), cfg.channels, cfg.pretrain_steps)


def sweep_cost(cfg: SweepConfig) -> budget.Cost:
    p, f, kept = _backbone_cost(cfg.channels, cfg.batch_size)
    fits = len(cfg.points) * len(WAYS)
    one = budget.Cost(p, kept, cfg.steps * fits, f, 70, data=5000 * 28 * 28)
    return _with_pretraining(one, cfg.channels, cfg.pretrain_steps)


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
            budget.Cost(convs + stem + 10 * out_c, kept, cfg.steps, flops, 20 + 12 * cfg.depth, 2, 1797 * 64)
        )
    return budget.total(costs)


# ---------------------------------------------------------------- data


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


def pretrained(channels: int, pretrain_steps: int, seed: int) -> tuple[dict, tuple]:
    """The pre-trained backbone's weights and curve, training it here if need be (tests, sweep)."""
    gen = pretraining(channels, pretrain_steps, seed, torch.device("cpu"))
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value


# ---------------------------------------------------------------- adaptation, three ways


def make_net(way: str, cfg, backbone_state: dict | None, device: torch.device) -> nn.Module:
    """The net a way starts from: pre-trained or fresh backbone, and a new 5-class head that
    starts from the same weights in every way (seeded on its own)."""
    if backbone_state is not None and "net.conv1.weight" in backbone_state:
        backbone = ResNet18Backbone({k[4:]: v for k, v in backbone_state.items()})
        if way == "scratch":
            backbone = ResNet18Backbone(_fresh_resnet_state(cfg.seed))
    else:
        torch.manual_seed(cfg.seed)
        backbone = Backbone(cfg.channels)
        if way != "scratch" and backbone_state is not None:
            backbone.load_state_dict(backbone_state)
    torch.manual_seed(cfg.seed + 1)
    head = nn.Linear(backbone.features, len(TARGET))
    model = Classifier(backbone, len(TARGET)).to(device)
    model.head.load_state_dict(head.state_dict())
    if way == "frozen":
        model.backbone.requires_grad_(False)
    return model


def _fresh_resnet_state(seed: int, prefixed: bool = False) -> dict:
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    state = resnet18().state_dict()
    return {f"net.{k}": v for k, v in state.items()} if prefixed else state


def optimizer(way: str, model: Classifier, cfg) -> torch.optim.Optimizer:
    if way == "frozen":
        return torch.optim.Adam(model.head.parameters(), lr=cfg.learning_rate)
    if way == "finetune":
        return torch.optim.Adam(
            [
                {"params": model.backbone.parameters(), "lr": cfg.learning_rate * cfg.backbone_lr},
                {"params": model.head.parameters(), "lr": cfg.learning_rate},
            ]
        )
    return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    logits = torch.cat([model(X[i : i + 512]) for i in range(0, len(X), 512)])
    model.train()
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def stage_outputs(backbone: nn.Module, X: torch.Tensor) -> list[torch.Tensor]:
    """Each conv stage's output (after its ReLU) for a batch, flattened per image."""
    with record_activations({str(i): a for i, a in enumerate(backbone.acts)}) as latest, torch.no_grad():
        backbone(X)
    return [latest[str(i)].flatten(1) for i in range(len(backbone.acts))]


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al., 2019) between two layers' responses to the same n images,
    (n, p) and (n, q): 1 for the same representation up to rotation and scale, near 0 for
    unrelated ones. Computed on the n×n Gram matrices (||BᵀA||² = <AAᵀ, BBᵀ>), which stay
    small however wide a layer is."""
    return gram_cka(centred_gram(a), centred_gram(b))


def centred_gram(a: torch.Tensor) -> torch.Tensor:
    a = a.float() - a.float().mean(0)
    return a @ a.T


def gram_cka(ka: torch.Tensor, kb: torch.Tensor) -> float:
    return float((ka * kb).sum() / (ka.norm() * kb.norm() + 1e-12))


def cka_to(reference: list[torch.Tensor], backbone: nn.Module, X: torch.Tensor) -> list[float]:
    """Each stage's CKA to the reference stages, given as their centred Gram matrices."""
    return [gram_cka(r, centred_gram(o)) for r, o in zip(reference, stage_outputs(backbone, X))]


def adapt(way: str, cfg, backbone_state, train_set, test_set, device, reference=None, probe=None):
    """One way of adapting: Adam on the few labelled examples, snapshots with the target test
    accuracy and (when given a reference) each stage's CKA to the pre-trained backbone."""
    X, y = train_set
    X_test, y_test = test_set
    model = make_net(way, cfg, backbone_state, device)
    opt = optimizer(way, model, cfg)
    g = torch.Generator().manual_seed(cfg.seed + 2)  # the same batches in every way
    cadence = Cadence(cfg.steps, max_snaps=40, min_seconds=0.1)
    step = 0
    for step in steps(cfg.steps):
        batch = torch.randint(0, len(X), (min(cfg.batch_size, len(X)),), generator=g).to(device)
        if way == "frozen":
            model.backbone.eval()  # a frozen backbone is a fixed function
        loss = F.cross_entropy(model(X[batch]), y[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log(step, train_loss=loss)
        if cadence.due(step):
            test_loss, test_acc = accuracy(model, X_test, y_test)
            if not math.isfinite(test_loss):
                raise Diverged(f"the test loss became {test_loss} at step {step}.")
            view = {}
            if reference is not None:
                view["cka"] = cka_to(reference, model.backbone, probe)
            if (yield Snapshot(step, cfg.steps, {"test_loss": test_loss, "test_acc": test_acc}, view=view)):
                break
    yield Snapshot(step, cfg.steps, final=True, state_dict=cpu_state_dict(model))


def backbone_for(cfg, device) -> tuple[dict | None, list[str]]:
    """The pre-trained backbone's weights and what the learner should know about where they
    came from. resnet18 only when its file is on disk; never downloaded during a lesson."""
    if cfg.backbone == "resnet18":
        path = resnet18_weights()
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            return {f"net.{k}": v for k, v in state.items()}, [f"resnet18 ImageNet weights from {path}."]
        note = (
            f"torchvision's resnet18 weights are not on disk ({RESNET18_FILE} in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'} or {data.data_dir()}), so the small CNN "
            "pre-trained here on digits 0–4 is used instead."
        )
        return None, [note]
    return None, []


def train(cfg: Config, device: torch.device):
    """Pre-train on digits 0–4 (or reuse the weights), then adapt to 5–9 three ways in lockstep."""
    check(cfg)
    state, notes = backbone_for(cfg, device)
    (X_pool, y_pool), (X_test, y_test) = target_digits(cfg.seed)
    X, y = labelled(X_pool, y_pool, cfg.labels_per_class, cfg.seed)
    per_class = len(y) // len(TARGET)
    if per_class < cfg.labels_per_class:
        notes.append(
            f"The digits that ship with the lab hold {per_class} training examples of each of 5–9: "
            f"training on {per_class} per class, not {cfg.labels_per_class}."
        )
    curve = ((), ())
    if state is None:
        kept = (cfg.channels, cfg.pretrain_steps, cfg.seed) in _PRETRAINED
        done = yield from pretraining(cfg.channels, cfg.pretrain_steps, cfg.seed, device)
        if done is None:  # stopped while pre-training: nothing adapted yet
            yield Snapshot(0, cfg.steps, final=True)
            return
        state, curve = done
        n_source = int(torch.isin(digits(seed=cfg.seed).y_train, torch.tensor(SOURCE)).sum())
        notes.append(
            f"Backbone pre-trained on all {n_source:,} training images of digits 0–4 for "
            f"{cfg.pretrain_steps} steps" + (" (kept from an earlier run)." if kept else ".")
        )
    notes.append(f"Adapting on {len(y)} labelled images of digits 5–9; tested on {len(y_test):,} others.")
    train_set, test_set = (X.to(device), y.to(device)), (X_test.to(device), y_test.to(device))
    probe = test_set[0][:PROBE]
    reference = [
        centred_gram(o) for o in stage_outputs(make_net("frozen", cfg, state, device).backbone, probe)
    ]
    ways = {WAYS[w]: adapt(w, cfg, state, train_set, test_set, device, reference, probe) for w in cfg.ways}
    head = {"pretrain_curve": curve, "labels_per_class": per_class, "phase": "adapting to digits 5–9"}
    yield from _first_with(side_by_side(ways, device), notes, head)


def _first_with(gen, notes: list[str], view: dict):
    """Pass a run's snapshots (and Stop) through, adding notes and a view to the first."""
    snap = next(gen)
    snap.notes, snap.view = notes + snap.notes, {**view, **snap.view}
    while True:
        message = yield snap
        try:
            snap = gen.send(message)
        except StopIteration:
            return


# ---------------------------------------------------------------- the sweep over labels


def sweep(cfg: SweepConfig, device: torch.device):
    """Accuracy after adaptation at each number of labels per class, for each way: one fit
    per (point, way), a snapshot after each."""
    check(cfg)
    done = yield from pretraining(cfg.channels, cfg.pretrain_steps, cfg.seed, device)
    if done is None:
        yield Snapshot(0, 1, final=True)
        return
    state, curve = done
    (X_pool, y_pool), test = target_digits(cfg.seed)
    X_test, y_test = (t.to(device) for t in test)
    fits = [(n, w) for n in sorted(int(p) for p in cfg.points) for w in WAYS]
    results: dict[str, list] = {WAYS[w]: [] for w in WAYS}
    done = 0
    for done in steps(len(fits)):
        n, way = fits[done - 1]
        X, y = labelled(X_pool, y_pool, n, cfg.seed)
        acc = fit(way, cfg, state, (X.to(device), y.to(device)), (X_test, y_test), device)
        if acc is None:
            break  # Stop during this fit
        results[WAYS[way]].append([len(y) // len(TARGET), acc])
        metrics = {"labels_per_class": n, f"{WAYS[way]}: test_acc": acc}
        if (yield Snapshot(done, len(fits), metrics, view={"sweep": results, "pretrain_curve": curve})):
            break
    yield Snapshot(done, len(fits), view={"sweep": results}, final=True)


def fit(way: str, cfg, state, train_set, test_set, device) -> float | None:
    """Train one way to the end without snapshots; its test accuracy (None if stopped)."""
    X, y = train_set
    model = make_net(way, cfg, state, device)
    opt = optimizer(way, model, cfg)
    g = torch.Generator().manual_seed(cfg.seed + 2)
    for _ in range(cfg.steps):
        if stop_requested():
            return None
        batch = torch.randint(0, len(X), (min(cfg.batch_size, len(X)),), generator=g).to(device)
        loss = F.cross_entropy(model(X[batch]), y[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return accuracy(model, *test_set)[1]


# ---------------------------------------------------------------- the blocks


def train_blocks(cfg: BlocksConfig, device: torch.device):
    """Plain, residual and dense stacks side by side, on the same batches of the 8×8 digits
    (small images keep a deep stack quick on a laptop)."""
    check(cfg)
    yield from side_by_side({STACKS[k]: train_stack(k, cfg, device) for k in cfg.blocks}, device)


def train_stack(kind: str, cfg: BlocksConfig, device: torch.device):
    g = seed_everything(cfg.seed)
    ds = digits("digits8", seed=cfg.seed)
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
        for step in steps(cfg.steps):
            batch = torch.randint(0, len(X), (cfg.batch_size,), generator=g).to(device)
            loss = F.cross_entropy(model(X[batch]), y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            log(step, train_loss=loss)
            if cadence.due(step):
                if not math.isfinite(loss.item()):
                    raise Diverged(f"the loss became {loss.item()} at step {step}.")
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
                if (yield snap):
                    break
    yield Snapshot(step, cfg.steps, final=True, state_dict=cpu_state_dict(model))


# ---------------------------------------------------------------- after a run: Grad-CAM


def load_ways(cfg: Config, state_dicts: dict[str, dict]) -> dict[str, nn.Module]:
    """Each way's trained net from the run's final weights, on the CPU, in eval mode."""
    by_label = {label: way for way, label in WAYS.items()}
    models = {}
    for label, state in state_dicts.items():
        way = by_label[label]
        resnet = any(k.startswith("backbone.net.") for k in state)
        backbone_state = _fresh_resnet_state(cfg.seed, prefixed=True) if resnet else None
        model = make_net(way, cfg, backbone_state, torch.device("cpu"))
        model.load_state_dict(state)
        models[label] = model.eval()
    return models


CAM_TITLES = {
    WAYS["frozen"]: "before (frozen)",
    WAYS["finetune"]: "after fine-tuning",
    WAYS["scratch"]: "scratch",
}


def grad_cams(models: dict[str, nn.Module], image: torch.Tensor, target: int) -> dict:
    """Grad-CAM of the true class on each net's last conv stage, and what each net predicts."""
    maps, predictions = {}, {}
    for name, model in models.items():
        with torch.no_grad():
            probs = F.softmax(model(image), dim=1)[0]
        predictions[name] = (int(probs.argmax()), float(probs.max()))
        cam = attribution.grad_cam(model, model.backbone.acts[-1], image, target)
        maps[CAM_TITLES.get(name, name)] = attribution.normalize_attribution(cam)
    return {"maps": maps, "predictions": predictions}


# ---------------------------------------------------------------- questions


def _accuracy_of(view, way: str) -> float:
    return view.last(metric(WAYS[way], "test_acc"), 0.0) or 0.0


def _scratch_within_3_points(view) -> tuple[str, str]:
    frozen, scratch = _accuracy_of(view, "frozen"), _accuracy_of(view, "scratch")
    answer = "yes" if scratch >= frozen - 0.03 else "no"
    return answer, f"Frozen backbone: {frozen:.1%}; from scratch: {scratch:.1%}."


def _most_changed_layer(view) -> tuple[str, str]:
    cka = view.view.get("variants", {}).get(WAYS["finetune"], {}).get("cka", [1.0])
    lowest = min(range(len(cka)), key=lambda i: cka[i])
    shown = ", ".join(f"conv {i + 1}: {c:.2f}" for i, c in enumerate(cka))
    return f"conv {lowest + 1}", f"CKA to the pre-trained layer: {shown}."


QUESTIONS = [
    Question(
        "Five labelled examples of each digit 5–9. Will the net trained from scratch come within "
        "3 points of the frozen pre-trained backbone?",
        ("yes", "no"),
        {"labels_per_class": 5, "ways": tuple(WAYS)},
        _scratch_within_3_points,
        "From 25 images a net cannot learn what a stroke, a loop or a tilt is; the backbone "
        "learned them from thousands of 0–4s, and only the last layer has to be fitted.",
    ),
    Question(
        "Fine-tune the pre-trained net on 20 examples per class. Which layer ends up least like "
        "its pre-trained self?",
        ("conv 1", "conv 2", "conv 3"),
        {"labels_per_class": 20, "ways": ("finetune",)},
        _most_changed_layer,
        "Early layers detect edges and strokes that every digit shares; the last layer's "
        "features are combinations specific to the digits it was trained on, so that is where "
        "the new task pulls hardest.",
    ),
]

ADAPT = Experiment(Config, train, cost, PREFERS_GPU)
SWEEP = Experiment(SweepConfig, sweep, sweep_cost, PREFERS_GPU)
BLOCKS = Experiment(BlocksConfig, train_blocks, blocks_cost, PREFERS_GPU)
