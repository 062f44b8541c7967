"""Chapter 8 — Modern CNNs & transfer learning.

Three experiments: two here on the 28×28 digits, and plain, residual and dense conv stacks on
the 8×8 digits (labs/blocks.py, listed here as BLOCKS with the page's other experiments).

Transfer: a small CNN is pre-trained on digits 0–4, then adapted to digits 5–9 with only a
few labelled examples per class, three ways side by side: its backbone frozen under a new
head, the whole net fine-tuned (the backbone at a lower learning rate), and the same net
trained from scratch. A sweep over labels per class shows where transfer matters; linear CKA
shows which layers fine-tuning changed; Grad-CAM shows what the net looks at before and after.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from figures.variants import metric
from labs.backbones import (
    RESNET18_FILE,
    SOURCE,
    TARGET,
    Backbone,
    Classifier,
    ResNet18Backbone,
    already_pretrained,
    backbone_cost,
    digits,
    fresh_resnet_state,
    labelled,
    pretraining,
    resnet18_weights,
    target_digits,
    with_pretraining,
)
from labs.blocks import BLOCKS  # the page's third experiment, listed with its own
from labs.classifier_metrics import accuracy
from labs.core import attribution, budget
from labs.core.compare import side_by_side
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps, stop_requested
from labs.core.divergence import LossWatch
from labs.core.hooks import record_activations
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict
from labs.similarity import centred_gram, gram_cka

PREFERS_GPU = True
WAYS = {
    "frozen": "frozen backbone",
    "finetune": "fine-tuned",
    "scratch": "from scratch",
}
LABEL_POINTS = ("5", "10", "20", "50", "100", "200", "500")  # text: a link lists them
PROBE = 128  # test images for CKA (its Gram matrices are PROBE × PROBE)


# ---------------------------------------------------------------- configs and costs


@dataclass(frozen=True)
class Config:
    # 10 by default: where both transfer ways lead scratch on every seed (by 0.03-0.13 over
    # seeds 0-2; at 20 the lead is 0.01-0.04, at ~400 it is gone)
    labels_per_class: int = knob(
        10, "Labelled examples per class", "Of each digit 5–9, for training.", lo=5, hi=500, step=5
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


def cost(cfg: Config) -> budget.Cost:
    """Pre-training (once per process and seed), then each way in lockstep; resnet18 at 64×64."""
    if cfg.backbone == "resnet18" and resnet18_weights() is not None:
        p, f, kept = 11.2e6, 3 * 0.15e9 * cfg.batch_size, 2.5e5 * cfg.batch_size
        one = budget.Cost(p, kept, cfg.steps, f, 200, data=5000 * 28 * 28, kind="conv")
        return budget.total(one for _ in cfg.ways)
    p, f, kept = backbone_cost(cfg.channels, cfg.batch_size)

    def way(name: str) -> budget.Cost:
        # a frozen backbone runs forward only: a third of a trained one's forward and backward
        flops = f / 3 if name == "frozen" else f
        seen = 1000 * 28 * 28 * cfg.channels
        return budget.Cost(p, kept, cfg.steps, flops, 70, data=5000 * 28 * 28, evaluation=seen, kind="conv")

    return with_pretraining(budget.total(way(w) for w in cfg.ways), cfg.channels, cfg.pretrain_steps)


def sweep_cost(cfg: SweepConfig) -> budget.Cost:
    p, f, kept = backbone_cost(cfg.channels, cfg.batch_size)
    fits = len(cfg.points) * len(WAYS)
    one = budget.Cost(p, kept, cfg.steps * fits, f, 70, data=5000 * 28 * 28, kind="conv")
    return with_pretraining(one, cfg.channels, cfg.pretrain_steps)


# ---------------------------------------------------------------- adaptation, three ways


def make_net(way: str, cfg, backbone_state: dict | None, device: torch.device) -> nn.Module:
    """The net a way starts from: pre-trained or fresh backbone, and a new 5-class head that
    starts from the same weights in every way (seeded on its own)."""
    if backbone_state is not None and "net.conv1.weight" in backbone_state:
        backbone = ResNet18Backbone({k[4:]: v for k, v in backbone_state.items()})
        if way == "scratch":
            backbone = ResNet18Backbone(fresh_resnet_state(cfg.seed))
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


def stage_outputs(backbone: nn.Module, X: torch.Tensor) -> list[torch.Tensor]:
    """Each conv stage's output (after its ReLU) for a batch, flattened per image."""
    with record_activations({str(i): a for i, a in enumerate(backbone.acts)}) as latest, torch.no_grad():
        backbone(X)
    return [latest[str(i)].flatten(1) for i in range(len(backbone.acts))]


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
    watch = LossWatch()
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
            watch.check(step, test_loss=test_loss)
            view = {}
            if reference is not None:
                view["cka"] = cka_to(reference, model.backbone, probe)
            yield Snapshot(step, cfg.steps, {"test_loss": test_loss, "test_acc": test_acc}, view=view)
    yield Snapshot(step, cfg.steps, final=True, state_dict=cpu_state_dict(model))


def backbone_for(cfg, device) -> tuple[dict | None, list[str]]:
    """The pre-trained backbone's weights and what the learner should know about where they
    came from. resnet18 only when its file is on disk; never downloaded during a lesson."""
    if cfg.backbone == "resnet18":
        path = resnet18_weights()
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            return {f"net.{k}": v for k, v in state.items()}, [
                "resnet18 ImageNet weights, from this server's disk."
            ]
        note = (
            f"torchvision's resnet18 weights are not on this server ({RESNET18_FILE}, in torch hub's "
            "checkpoints folder or the data folder), so the small CNN pre-trained here on digits "
            "0–4 is used instead."
        )
        return None, [note]
    return None, []


def train(cfg: Config, device: torch.device):
    """Pre-train on digits 0–4 (or reuse the weights), then adapt to 5–9 three ways in lockstep."""
    check(cfg)
    state, notes = backbone_for(cfg, device)
    curve = ((), ())
    if state is None:
        kept = already_pretrained(cfg.channels, cfg.pretrain_steps, cfg.seed)
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
    # scanning the target digits (~0.1 s) waits until pre-training has shown its numbers
    (X_pool, y_pool), (X_test, y_test) = target_digits(cfg.seed)
    X, y = labelled(X_pool, y_pool, cfg.labels_per_class, cfg.seed)
    per_class = len(y) // len(TARGET)
    if per_class < cfg.labels_per_class:
        notes.append(
            f"The digits that ship with the lab hold {per_class} training examples of each of 5–9: "
            f"training on {per_class} per class, not {cfg.labels_per_class}."
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
    """Pass a run's snapshots through, adding notes and a view to the first."""
    first = next(gen)
    first.notes, first.view = notes + first.notes, {**view, **first.view}
    yield first
    yield from gen


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
    # at once, before the first fit: the backbone's curve and the axes the points will land on
    yield Snapshot(0, len(fits), view={"sweep": results, "pretrain_curve": curve})
    done = 0
    for done in steps(len(fits)):
        n, way = fits[done - 1]
        X, y = labelled(X_pool, y_pool, n, cfg.seed)
        acc = fit(way, cfg, state, (X.to(device), y.to(device)), (X_test, y_test), device)
        if acc is None:
            break  # Stop during this fit
        results[WAYS[way]].append([len(y) // len(TARGET), acc])
        metrics = {"labels_per_class": n, f"{WAYS[way]}: test_acc": acc}
        yield Snapshot(done, len(fits), metrics, view={"sweep": results, "pretrain_curve": curve})
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


# ---------------------------------------------------------------- after a run: Grad-CAM


def load_ways(cfg: Config, state_dicts: dict[str, dict]) -> dict[str, nn.Module]:
    """Each way's trained net from the run's final weights, on the CPU, in eval mode."""
    by_label = {label: way for way, label in WAYS.items()}
    models = {}
    for label, state in state_dicts.items():
        way = by_label[label]
        resnet = any(k.startswith("backbone.net.") for k in state)
        backbone_state = fresh_resnet_state(cfg.seed, prefixed=True) if resnet else None
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
# by part, in the order of the page's Train buttons (labs/core/contract.py)
EXPERIMENTS = {
    "adapt": ADAPT,
    "sweep": SWEEP,
    "blocks": BLOCKS,
}
