"""Chapter 19 — Taking a model to production.

A small CNN learns the 28×28 digits (or the learner's CNN from chapter 7 is taken as it is).
Then it leaves PyTorch's training loop the ways a deployed model does:

- exported: `torch.export` (an ahead-of-time graph, saved as .pt2) and ONNX, which
  onnxruntime runs; both must give PyTorch's logits within a stated tolerance;
- made small: dynamic int8 quantization of its Linear (and LSTM) layers, and magnitude pruning
  at a chosen sparsity, with accuracy measured against sparsity;
- timed: each variant's latency at batch 1 and batch 64, median and 90th percentile over
  measured runs after warm-up, beside its size on disk and its accuracy.

A drawn digit (the page's canvas) is preprocessed as MNIST was: ink cropped, scaled to fit 20×20,
centred by its centre of mass in 28×28. `preprocess` is that pipeline; `shrink` the naive one.
"""

from __future__ import annotations

import gzip
import io
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from labs import convnets, deploy
from labs.backbones import Backbone, Classifier
from labs.core import budget, data
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.phases import Plan, descend, minibatches
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict

PREFERS_GPU = False  # export, quantization and CPU latency are the lesson: all on the CPU
SIDE = 28
TRAIN_IMAGES = 4000
BATCH = 64
LEARNING_RATE = 3e-3
SWEEP = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)  # sparsities of the accuracy chart
RUNS = {1: 60, 64: 20}  # timed runs at each batch size
SOURCES = ("train here", "CNN chapter")
CHAPTER8_CHANNELS = 8  # chapter 8's small CNN at its default width (labs/transfer.py Config)


@dataclass(frozen=True)
class Config:
    model: str = knob(
        "train here",
        "Model",
        "Train a small CNN here, or take the CNN you trained in the CNN chapter in this "
        "browser session (on 28×28 digits).",
        choices=SOURCES,
    )
    hidden: int = knob(
        128, "Hidden units", "Of the classifier's Linear layer (most of the weights).", lo=32, hi=512, step=32
    )
    epochs: int = knob(3, "Epochs", "Over 4,000 training digits.", lo=1, hi=30, step=1)
    sparsity: float = knob(
        0.8,
        "Sparsity",
        "Share of the weights pruned (the smallest in magnitude, over all layers).",
        lo=0.0,
        hi=0.99,
        step=0.01,
    )
    seed: int = knob(0, "Seed", "Same seed, same run.", lo=0, hi=9999, step=1)


class DigitNet(nn.Module):
    """Two small conv layers, then a wide Linear classifier: like most deployed vision heads,
    its weights sit mostly in the Linear layers that dynamic quantization shrinks."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 7 * 7, hidden), nn.ReLU(), nn.Linear(hidden, 10)
        )

    def forward(self, x):  # (N, 1, 28, 28) -> (N, 10) logits
        return self.classifier(self.features(x))


def per_epoch() -> int:
    return math.ceil(TRAIN_IMAGES / BATCH)


def after_training_steps() -> int:
    """Export; quantize; prune; each sparsity of the sweep; each variant's latency."""
    return 3 + len(SWEEP) + 5


def cost(cfg: Config) -> budget.Cost:
    convs = 2 * (9 * 8 * 28 * 28 + 9 * 8 * 16 * 14 * 14)  # multiply-adds of one image, doubled
    p, f, kept = budget.linear(784, cfg.hidden, BATCH)
    p2, f2, kept2 = budget.linear(cfg.hidden, 10, BATCH)
    train_steps = cfg.epochs * per_epoch()
    # after training: latency (~330 images each of 5 variants) and the sweep (8 × 1,000 images)
    evaluation_flops = (5 * 400 + 8 * 1000) * (convs + 2 * 784 * cfg.hidden) * 30
    n = after_training_steps()
    return budget.Cost(
        params=p + p2 + 1248,
        activations=BATCH * (8 * 28 * 28 * 3 + 16 * 14 * 14 * 3) + kept + kept2,
        steps=train_steps + n,
        step_flops=(3 * convs * BATCH + f + f2) + evaluation_flops / (train_steps + n),
        step_ops=60 + 400 * n / (train_steps + n),
        data=5000 * SIDE * SIDE,
        evaluation=1000 * (8 * 28 * 28 + 16 * 14 * 14),
        kind="conv",
    )


def digits(seed: int) -> data.ImageSet:
    return data.image_set("mnist_subset", seed=seed, max_train=TRAIN_IMAGES)


@torch.no_grad()
def accuracy(model, X, y) -> float:
    return (predict_logits(model, X).argmax(1) == y).float().mean().item()


@torch.no_grad()
def predict_logits(model, X, chunk: int = 500) -> torch.Tensor:
    return torch.cat([torch.as_tensor(model(X[i : i + chunk])) for i in range(0, len(X), chunk)])


def train(cfg: Config, device: torch.device, pretrained: tuple | None = None):
    """Train (or take) the model; export it; quantize it; prune it along a sweep; time every
    variant. `pretrained` is (chapter 7's Config, its weights)."""
    check(cfg)
    g = seed_everything(cfg.seed)
    ds = digits(cfg.seed)
    X, y, X_test, y_test = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    notes = [ds.note] if ds.note else []
    model = _model(cfg, pretrained, notes)
    n_train = cfg.epochs * per_epoch() if pretrained is None else 0
    plan = Plan(n_train + after_training_steps())
    cadence = Cadence(max(1, n_train), max_snaps=20, min_seconds=0.2)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    watch = LossWatch()
    for step, _, xb, yb in minibatches(plan, n_train, X, y, g, BATCH):
        loss = F.cross_entropy(model(xb), yb)
        descend(opt, loss)
        log(step, train_loss=loss)
        if cadence.due(step):
            watch.check(step, loss=loss)
            model.eval()
            metrics = {"epoch": step / per_epoch(), "test_acc": accuracy(model, X_test, y_test)}
            model.train()
            yield Snapshot(step, plan.total, metrics, notes=notes)
    model.eval()
    files = {}
    if not plan.ended:
        files = yield from _deploy(model, cfg, plan, X_test, y_test, notes)
    plan.close()
    # the exported files travel once, with the weights, for the page's downloads and canvas
    final_view = {"files": files, "pretrained_cfg": pretrained[0] if pretrained else None}
    yield Snapshot(plan.step, plan.total, view=final_view, final=True, state_dict=cpu_state_dict(model))


def _model(cfg: Config, pretrained: tuple | None, notes: list[str]) -> nn.Module:
    if pretrained is None:
        if cfg.model == "CNN chapter":
            notes.append("No CNN on 28×28 digits from the CNN chapter in this session: trained one here.")
        return DigitNet(cfg.hidden)
    cnn_cfg, state_dict = pretrained
    notes.append("Deploying your CNN from the CNN chapter, as you trained it.")
    return convnets.load_model(cnn_cfg, SIDE, state_dict)


def _deploy(model, cfg: Config, plan: Plan, X_test, y_test, notes):
    """Each step of taking the model out of training, one plan step each, each a snapshot."""
    # two images in their own storage: the .pt2 keeps the example (a view would drag in all of
    # X_test), and torch.export specialises a batch of 1 to a constant
    example = X_test[:2].clone()
    variants: dict[str, dict] = {"float32 (eager)": {"run": model, "file": deploy.state_bytes(model)}}
    view: dict = {"tolerance": deploy.TOLERANCE}
    files: dict[str, bytes] = {}
    for _ in plan.take(1):
        exported = deploy.export(model, example)
        view["export"] = {"max_diff": exported["max_diff"], "onnx_error": exported["onnx_error"]}
        files = dict(exported["files"])
        for name, runner in exported["programs"].items():
            variants[name] = {"run": runner, "file": exported["files"][name]}
        if exported["onnx_error"]:
            notes.append(exported["onnx_error"])
        yield Snapshot(plan.step, plan.total, view=dict(view), notes=notes)
    for _ in plan.take(1):
        quantized = deploy.quantize(model)
        variants["int8 dynamic"] = {"run": quantized, "file": deploy.state_bytes(quantized)}
        linear = {"float32": deploy.linear_bytes(model), "int8": deploy.linear_bytes(quantized)}
        view["linear_bytes"] = linear
        # the whole file, here and for chapter 8's CNN, whose weights sit in convolutions
        calibration = X_test[:64].cpu()
        cnn = Classifier(Backbone(CHAPTER8_CHANNELS), 10).eval()
        view["quantized_sizes"] = {
            "this page's net": deploy.sizes_by_quantization(model, calibration),
            "chapter 8's CNN": deploy.sizes_by_quantization(cnn, calibration),
        }
        yield Snapshot(plan.step, plan.total, view=dict(view), notes=notes)
    for _ in plan.take(1):
        pruned = deploy.pruned_copy(model, cfg.sparsity)
        variants[f"pruned {cfg.sparsity:.0%}"] = {"run": pruned, "file": deploy.state_bytes(pruned)}
        yield Snapshot(plan.step, plan.total, view=dict(view), notes=notes)
    sweep = {"sparsity": [], "accuracy": []}
    for sparsity, _ in zip(SWEEP, plan.take(len(SWEEP))):
        sweep["sparsity"].append(sparsity)
        sweep["accuracy"].append(accuracy(deploy.pruned_copy(model, sparsity), X_test, y_test))
        view["sweep"] = {k: list(v) for k, v in sweep.items()}
        yield Snapshot(plan.step, plan.total, view=dict(view), notes=notes)
    reference = predict_logits(model, X_test)
    rows = []
    for (name, variant), _ in zip(variants.items(), plan.take(len(variants))):
        rows.append(table_row(name, variant, reference, X_test, y_test))
        view["table"] = list(rows)
        done = len(rows) == len(variants)  # then every variant's accuracy joins the metrics (.csv)
        metrics = {f"{r['variant']}: accuracy": r["accuracy"] for r in rows} if done else {}
        yield Snapshot(plan.step, plan.total, metrics, view=dict(view), notes=notes)
    return files


def table_row(name: str, variant: dict, reference: torch.Tensor, X, y) -> dict:
    run, file = variant["run"], variant["file"]
    logits = predict_logits(run, X)
    b1, b64 = (deploy.latency_ms(run, b, RUNS[b], X) for b in (1, 64))
    return {
        "variant": name,
        "size_kb": len(file) / 1024,
        "gzip_kb": len(gzip.compress(file, 6)) / 1024,
        "accuracy": float((logits.argmax(1) == y).float().mean()),
        "max_diff": float((logits - reference).abs().max()),
        "b1_median_ms": b1[0],
        "b1_p90_ms": b1[1],
        "b64_median_ms": b64[0],
        "b64_p90_ms": b64[1],
    }


# ---------------------------------------------------------------- serving a drawn digit


def shrink(pixels: np.ndarray) -> torch.Tensor:
    """The naive way: the whole canvas scaled down to 28×28. The digit stays wherever and
    however large it was drawn, unlike every digit the model trained on."""
    x = torch.as_tensor(np.asarray(pixels, dtype=np.float32))[None, None]
    return F.interpolate(x, size=(SIDE, SIDE), mode="area").clamp(0, 1)


def preprocess(pixels: np.ndarray) -> torch.Tensor | None:
    """A drawing (H, W) in [0, 1], ink bright on dark, as MNIST's digits were made: cropped to
    its ink, scaled (keeping its aspect) to fit 20×20 with antialiasing, then pasted into 28×28
    so that its centre of mass falls on the centre. (1, 1, 28, 28), or None for a blank canvas."""
    img = np.asarray(pixels, dtype=np.float32)
    rows, cols = np.nonzero(img > 0.1)
    if len(rows) == 0:
        return None
    crop = torch.as_tensor(img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
    h, w = crop.shape
    scale = 20 / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = F.interpolate(crop[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[
        0, 0
    ]
    small = (small / small.max().clamp_min(1e-6)).clamp(0, 1)
    ys, xs = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    mass = small.sum()
    cy, cx = float((ys * small).sum() / mass), float((xs * small).sum() / mass)
    top = int(round(SIDE / 2 - cy))
    left = int(round(SIDE / 2 - cx))
    top, left = min(max(top, 0), SIDE - size[0]), min(max(left, 0), SIDE - size[1])
    out = torch.zeros(SIDE, SIDE)
    out[top : top + size[0], left : left + size[1]] = small
    return out[None, None]


def serve(variants: dict, image: torch.Tensor) -> dict:
    """Each variant's class probabilities for one image and its latency (median of 20 calls
    after 5 warm-up calls): what a request to it would cost."""
    results = {}
    with torch.no_grad():
        for name, run in variants.items():
            for _ in range(5):
                run(image)
            times = []
            for _ in range(20):
                start = time.perf_counter()
                logits = run(image)
                times.append((time.perf_counter() - start) * 1000)
            probs = F.softmax(torch.as_tensor(logits).float(), dim=1)[0].numpy()
            results[name] = {"probs": probs, "ms": float(np.median(times))}
    return results


def served_variants(cfg: Config, state_dict: dict, export_files: dict, pretrained_cfg=None) -> dict:
    """The variants a finished run measured, rebuilt in this process from its weights and its
    ONNX file: {name: callable on a (N, 1, 28, 28) batch}."""
    if pretrained_cfg is not None:
        model = convnets.load_model(pretrained_cfg, SIDE, state_dict)
    else:
        model = DigitNet(cfg.hidden)
        model.load_state_dict(state_dict)
        model.eval()
    runs = {
        "float32 (eager)": model,
        "int8 dynamic": deploy.quantize(model),
        f"pruned {cfg.sparsity:.0%}": deploy.pruned_copy(model, cfg.sparsity),
    }
    program = export_files.get("torch.export (.pt2)")
    if program:
        runs["torch.export (.pt2)"] = torch.export.load(io.BytesIO(program)).module()
    onnx_bytes = export_files.get("ONNX (onnxruntime)")
    if onnx_bytes and deploy.onnx_available():
        session = deploy.onnx_session(onnx_bytes)
        runs["ONNX (onnxruntime)"] = lambda x: session.run(None, {"image": np.asarray(x, dtype=np.float32)})[
            0
        ]
    return runs


SERVABLE = ("ONNX (onnxruntime)", "float32 (eager)")  # what an HTTP endpoint may serve


def predictor(variants: dict, which: str = SERVABLE[0]) -> tuple[str, object]:
    """What an HTTP endpoint serves, from `served_variants`: the ONNX file through onnxruntime
    (as a deployment would; the eager model where this server has no onnxruntime) or the float32
    model in PyTorch. A function from images (N, 1, 28, 28) float32 to logits (N, 10), safe to
    call from several threads."""
    if which == SERVABLE[0] and which in variants:
        return which, variants[which]
    model = variants["float32 (eager)"]

    def eager(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(images)).numpy()

    return "float32 (eager PyTorch)", eager


def _quantized_share(view) -> tuple[str, str]:
    linear = view.view.get("linear_bytes")
    if not linear:
        return "no", "The run ended before it quantized."
    ratio = linear["float32"] / linear["int8"]
    return ("about 4×" if 3 <= ratio <= 4.5 else "about 2×" if ratio < 3 else "about 8×"), (
        f"The Linear layers' saved weights went from {linear['float32'] / 1024:.0f} KB to "
        f"{linear['int8'] / 1024:.0f} KB: {ratio:.1f}× smaller."
    )


def _cnn_shrinks(view) -> tuple[str, str]:
    sizes = view.view.get("quantized_sizes", {}).get("chapter 8's CNN")
    if not sizes:
        return "–", "The run ended before it quantized."
    ratio = sizes["float32"] / sizes["int8 dynamic"]
    answer = (
        "about 4× smaller" if ratio >= 3 else "less than 1.5× smaller" if ratio < 1.5 else "about 2× smaller"
    )
    return answer, (
        f"Chapter 8's CNN: {sizes['float32'] / 1024:.0f} KB in float32, "
        f"{sizes['int8 dynamic'] / 1024:.0f} KB with dynamic int8 ({ratio:.2f}× smaller)."
    )


QUESTIONS = [
    Question(
        "Dynamic int8 quantization stores each Linear weight in one byte instead of four. How "
        "much smaller do the Linear layers get on disk?",
        ("about 2×", "about 4×", "about 8×"),
        {"epochs": 1},
        _quantized_share,
        "int8 is a quarter of float32; each layer also keeps a scale and zero point, and the "
        "biases stay in float32, a few hundred bytes beside ~100,000 weights.",
    ),
    Question(
        "Chapter 8's CNN keeps two-thirds of its weights in convolutions. With the same dynamic "
        "int8 quantization, how much smaller does its whole file get?",
        ("about 4× smaller", "about 2× smaller", "less than 1.5× smaller"),
        {"epochs": 1},
        _cnn_shrinks,
        "Dynamic quantization converts Linear (and LSTM) layers only: the convolutions stay in "
        "float32, so only the third of the weights in the classifier's Linear layer shrink. Static "
        "quantization, calibrated on sample images, takes the convolutions too.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
