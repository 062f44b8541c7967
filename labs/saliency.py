"""Chapter 18, first experiment — eight attribution methods, and whether to believe them.

A small CNN learns the 28×28 digits (or the learner's CNN from chapter 7 is taken as it is).
Then, on the same test images, Captum's Saliency, Integrated Gradients, SmoothGrad, DeepLift,
GradientShap, Guided Backprop, Occlusion and Grad-CAM explain its decisions, and the maps are
put to the tests of "Sanity Checks for Saliency Maps" (Adebayo et al., 2018):

- cascading randomization: the layers are re-initialised from the top down, one by one. A map
  that explains *the model* must change when the model is destroyed; one that stays put is
  drawing the input (an edge detector), whatever the model learned;
- data randomization: the same net trained on shuffled labels, which has nothing to explain;

and to two faithfulness numbers: IG's convergence delta as its steps grow, and Captum's
`infidelity` and `sensitivity_max` for each method.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from captum.metrics import infidelity, sensitivity_max
from torch import nn
from torch.nn import functional as F

from labs import convnets
from labs.core import attribution, budget, data
from labs.core.attribution import BASELINES, METHODS
from labs.core.config import check, knob
from labs.core.control import log
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.phases import Plan, descend, minibatches
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy

PREFERS_GPU = True
SIDE = 28
CHANNELS = 8  # of the first conv layer, doubling after each
TRAIN_IMAGES = 4000  # the mnist_subset's training split
BATCH = 64
LEARNING_RATE = 3e-3
IG_STEPS = (4, 8, 16, 32, 64, 128)  # IG's convergence delta is measured at each
SOURCES = ("train here", "CNN chapter")


@dataclass(frozen=True)
class Config:
    model: str = knob(
        "train here",
        "Model to explain",
        "Train a small CNN here, or explain the CNN you trained in the CNN chapter in this "
        "browser session (on 28×28 digits).",
        choices=SOURCES,
    )
    conv_layers: int = knob(
        3, "Conv layers", "Of the CNN trained here (8, 16, 32 channels).", lo=2, hi=3, step=1
    )
    epochs: int = knob(3, "Epochs", "Over 4,000 training digits.", lo=1, hi=30, step=1)
    baseline: str = knob(
        "black",
        "Baseline",
        "What “no digit” looks like for IG, DeepLift and GradientShap: their maps explain the "
        "difference between the image and it.",
        choices=BASELINES,
    )
    images: int = knob(4, "Images", "Test images explained side by side.", lo=1, hi=8, step=1)
    ig_steps: int = knob(
        32, "IG steps", "Points on IG's path from the baseline to the image.", lo=4, hi=256, step=4
    )
    noise: float = knob(
        0.15, "SmoothGrad noise", "σ of the noise, as a share of the pixel range.", lo=0.0, hi=0.5, step=0.05
    )
    samples: int = knob(16, "Samples", "Noisy copies for SmoothGrad and GradientShap.", lo=4, hi=64, step=4)
    shuffled_epochs: int = knob(
        3,
        "Shuffled-label epochs",
        "Training on shuffled labels, for the data-randomization test (0 skips it).",
        lo=0,
        hi=30,
        step=1,
    )
    seed: int = knob(0, "Seed", "Same seed, same run.", lo=0, hi=9999, step=1)


def build(conv_layers: int) -> convnets.SmallCNN:
    return convnets.SmallCNN(convnets.Config(conv_layers=conv_layers, channels=CHANNELS), SIDE)


def digits(seed: int) -> data.ImageSet:
    return data.image_set("mnist_subset", seed=seed, max_train=TRAIN_IMAGES)


def per_epoch() -> int:
    return math.ceil(TRAIN_IMAGES / BATCH)


def analysis_steps(cfg: Config) -> int:
    """Steps after training: the maps, each cascade stage, the shuffled net's maps, IG's deltas,
    each method's faithfulness. Counted as steps so that Stop and the progress bar cover them."""
    return 1 + (cfg.conv_layers + 1) + 1 + len(IG_STEPS) + len(METHODS)


def cost(cfg: Config) -> budget.Cost:
    """The CNN's training steps (twice, with the shuffled-label net), then attribution passes:
    each analysis step runs every method, dozens of forward-backward passes of a few images."""
    model_cfg = convnets.Config(conv_layers=cfg.conv_layers, channels=CHANNELS, batch_size=BATCH)
    cnn = convnets.cost(model_cfg)
    train_steps = (cfg.epochs + cfg.shuffled_epochs) * per_epoch()
    passes = cfg.images * (cfg.ig_steps + 3 * cfg.samples + 200)  # forward-backwards per method pass
    analysis_flops = passes * cnn.step_flops / BATCH
    n = analysis_steps(cfg)
    return budget.Cost(
        params=cnn.params * 2,
        activations=max(cnn.activations, cnn.activations / BATCH * min(passes, 512)),
        steps=train_steps + n,
        step_flops=(cnn.step_flops * train_steps + analysis_flops * n) / (train_steps + n),
        step_ops=cnn.step_ops + 40 * len(METHODS) * n / (train_steps + n),
        data=cnn.data,
        evaluation=cnn.evaluation,
        kind="conv",  # training and Captum's passes alike: small convolutions' measured rate
    )


@dataclass(frozen=True)
class Study:
    """What the phases of one run share: its settings and plan of steps, its random stream, the
    digits on the device, and the notes for the learner."""

    cfg: Config
    plan: Plan
    g: torch.Generator
    train: tuple[torch.Tensor, torch.Tensor]  # (images (N, 1, 28, 28), labels (N,))
    test: tuple[torch.Tensor, torch.Tensor]
    notes: list[str]


def fit(model: nn.Module, study: Study, labels: torch.Tensor, n_steps: int, name: str):
    """Adam on cross-entropy for `n_steps` batches of the training images with `labels`, taken
    from the plan, yielding snapshots with the test accuracy. Returns when done, or on Stop."""
    plan, notes, X = study.plan, study.notes, study.train[0]
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    cadence = Cadence(n_steps, max_snaps=25, min_seconds=0.2)
    watch = LossWatch()
    for step, n, xb, yb in minibatches(plan, n_steps, X, labels, study.g, BATCH):
        loss = F.cross_entropy(model(xb), yb)
        descend(opt, loss)
        log(step, **{f"{name} loss": loss})
        if cadence.due(n):
            watch.check(step, **{f"{name} loss": loss})
            acc = accuracy(model, *study.test)
            yield Snapshot(step, plan.total, {f"{name} test_acc": acc, "epoch": n / per_epoch()}, notes=notes)


@torch.no_grad()
def accuracy(model: nn.Module, X, y) -> float:
    with attribution.evaluating(model):
        return (convnets.evaluate(model, X).argmax(1) == y).float().mean().item() if len(X) else 0.0


def last_conv_act(model: nn.Module) -> nn.Module | None:
    return model.blocks[-1].act if isinstance(model, convnets.SmallCNN) else None


def all_maps(model, x, target, cfg: Config) -> dict[str, np.ndarray]:
    """Every method's signed map for each image, (N, H, W), raw (not yet scaled for drawing).
    Seeded, so that a randomized model is compared with the same noise draws."""
    baseline = attribution.baseline_images(x, cfg.baseline, cfg.seed)
    maps = {}
    for method in METHODS:
        torch.manual_seed(cfg.seed)
        maps[method] = to_numpy(
            attribution.attribute(
                method, model, x, target, baseline, last_conv_act(model), cfg.ig_steps, cfg.noise, cfg.samples
            )
        )
    return maps


def scaled(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each map as Captum draws it: signed, in [-1, 1], the top 2% saturated."""
    return {m: np.stack([attribution.normalize_attribution(a) for a in v]) for m, v in maps.items()}


def mean_rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([attribution.rank_correlation(p, q) for p, q in zip(a, b)]))


def cascade_layers(model: convnets.SmallCNN) -> list[tuple[str, list[nn.Module]]]:
    """(stage name, modules re-initialised at that stage), from the top down."""
    stages = [("head", [model.head])]
    for i in reversed(range(len(model.blocks))):
        block = model.blocks[i]
        stages.append((f"conv {i + 1}", [block.conv, block.norm]))
    return stages


def train(cfg: Config, device: torch.device, pretrained: tuple | None = None):
    """Train (or take) the CNN; explain it eight ways; randomize it from the top down; train a
    twin on shuffled labels; measure IG's delta and each method's faithfulness. `pretrained`
    is (chapter 7's Config, its weights) when the learner explains that CNN."""
    check(cfg)
    g = seed_everything(cfg.seed)
    ds = digits(cfg.seed)
    X, y = ds.X_train.to(device), ds.y_train.to(device)
    X_test, y_test = ds.X_test.to(device), ds.y_test.to(device)
    notes = [ds.note] if ds.note else []
    model = _model(cfg, pretrained, notes).to(device)
    own = pretrained is None
    n_train = cfg.epochs * per_epoch() if own else 0
    n_shuffled = cfg.shuffled_epochs * per_epoch()
    plan = Plan(n_train + n_shuffled + analysis_steps(cfg))
    study = Study(cfg, plan, g, (X, y), (X_test, y_test), notes)
    x, shown_labels = X_test[: cfg.images], y_test[: cfg.images]

    def final() -> Snapshot:
        plan.close()
        view = {"pretrained_cfg": pretrained[0] if pretrained else None}  # to rebuild the net
        return Snapshot(plan.step, plan.total, view=view, final=True, state_dict=cpu_state_dict(model))

    if own:
        yield from fit(model, study, y, n_train, "digits")
    if plan.ended:
        yield final()
        return
    model.eval()
    with torch.no_grad():
        target = model(x).argmax(1)  # explain what the model decided
    test_acc = accuracy(model, X_test, y_test)
    maps = None
    for _ in plan.take(1):
        maps = all_maps(model, x, target, cfg)
        view = {
            "shown": {
                "images": to_numpy(x[:, 0]),
                "labels": to_numpy(shown_labels).astype(int),
                "predicted": to_numpy(target).astype(int),
                "maps": scaled(maps),
            }
        }
        yield Snapshot(plan.step, plan.total, {"digits test_acc": test_acc}, view=view, notes=notes)
    if maps is None or plan.ended:
        yield final()
        return
    yield from _cascade(model, study, x, target, maps)
    if not plan.ended and n_shuffled:
        yield from _data_randomization(model, study, x, target, maps)
    if not plan.ended:
        yield from _faithfulness(model, study, x, target)
    yield final()


def _model(cfg: Config, pretrained: tuple | None, notes: list[str]) -> nn.Module:
    if pretrained is None:
        if cfg.model == "CNN chapter":
            notes.append("No CNN on 28×28 digits from the CNN chapter in this session: trained one here.")
        return build(cfg.conv_layers)
    cnn_cfg, state_dict = pretrained
    model = convnets.load_model(cnn_cfg, SIDE, state_dict)
    notes.append(
        f"Explaining your CNN from the CNN chapter ({cnn_cfg.conv_layers} conv layers, "
        f"{convnets.n_params(model):,} weights), as you trained it."
    )
    return model


def _cascade(model: nn.Module, study: Study, x: torch.Tensor, target: torch.Tensor, original: dict):
    """Re-initialise the head, then each conv layer from the top, cumulatively; after each,
    every method's maps of `x` (explained for `target`) and their rank correlation with the
    trained model's maps (`original`)."""
    cfg, plan, notes = study.cfg, study.plan, study.notes
    wrecked = copy.deepcopy(model)
    stages, rho = ["trained"], {m: [1.0] for m in METHODS}
    shown = {m: [attribution.normalize_attribution(original[m][0])] for m in METHODS}
    for (stage, modules), _ in zip(cascade_layers(wrecked), plan.take(cfg.conv_layers + 1)):
        torch.manual_seed(cfg.seed + len(stages))
        for module in modules:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        maps = all_maps(wrecked, x, target, cfg)
        stages.append(stage)
        for m in METHODS:
            rho[m].append(mean_rank_correlation(original[m], maps[m]))
            shown[m].append(attribution.normalize_attribution(maps[m][0]))
        metrics = {f"cascade ρ: {m}": rho[m][-1] for m in METHODS}
        view = {
            "cascade": {
                "stages": list(stages),
                "rho": {m: list(v) for m, v in rho.items()},
                "maps": {m: np.stack(v) for m, v in shown.items()},
            }
        }
        yield Snapshot(plan.step, plan.total, metrics, view=view, notes=notes)


def _data_randomization(
    model: nn.Module, study: Study, x: torch.Tensor, target: torch.Tensor, original: dict
):
    """The same architecture, trained as long on the same images with their labels shuffled:
    it can only memorise. How much do its maps look like the real model's?"""
    cfg, plan, notes = study.cfg, study.plan, study.notes
    (X, y), (X_test, y_test) = study.train, study.test
    twin = copy.deepcopy(model)  # the same architecture, whatever its source, started afresh
    torch.manual_seed(cfg.seed)
    for module in twin.modules():
        if module is not twin and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    shuffled = y[torch.randperm(len(y), generator=study.g).to(y.device)]
    n_steps = cfg.shuffled_epochs * per_epoch()
    yield from fit(twin, study, shuffled, n_steps, "shuffled labels")
    if plan.ended:
        return
    for _ in plan.take(1):
        maps = all_maps(twin, x, target, cfg)
        rho = {m: mean_rank_correlation(original[m], maps[m]) for m in METHODS}
        view = {
            "shuffled": {
                "rho": rho,
                "maps": {m: attribution.normalize_attribution(maps[m][0]) for m in METHODS},
                "train_acc": accuracy(twin, X[:1000], shuffled[:1000]),
                "test_acc": accuracy(twin, X_test, y_test),
            }
        }
        metrics = {f"shuffled ρ: {m}": v for m, v in rho.items()}
        yield Snapshot(plan.step, plan.total, metrics, view=view, notes=notes)


def _faithfulness(model: nn.Module, study: Study, x: torch.Tensor, target: torch.Tensor):
    """IG's convergence delta at each number of steps; then, per method, Captum's infidelity
    (does the map predict how the score moves when pixels are nudged?) and sensitivity_max
    (how much does the map itself move when the image barely does?)."""
    cfg, plan, notes = study.cfg, study.plan, study.notes
    baseline = attribution.baseline_images(x, cfg.baseline, cfg.seed)
    deltas = []
    for n, _ in zip(IG_STEPS, plan.take(len(IG_STEPS))):
        ig = attribution.IntegratedGradients(model)
        with attribution.evaluating(model):
            _, delta = ig.attribute(x, baseline, target=target, n_steps=n, return_convergence_delta=True)
        deltas.append(float(delta.abs().mean()))
        view = {"ig_delta": {"steps": list(IG_STEPS[: len(deltas)]), "delta": list(deltas)}}
        yield Snapshot(plan.step, plan.total, {"IG delta": deltas[-1]}, view=view, notes=notes)
    scores = {}
    for method, _ in zip(METHODS, plan.take(len(METHODS))):
        scores[method] = faithfulness(model, x, target, method, cfg)
        yield Snapshot(plan.step, plan.total, view={"faithfulness": dict(scores)}, notes=notes)


def load(cfg: Config, state_dict: dict, pretrained_cfg=None) -> nn.Module:
    """The explained net of a finished run, in eval mode (chapter 7's, when it was that one)."""
    if pretrained_cfg is not None:
        return convnets.load_model(pretrained_cfg, SIDE, state_dict)
    model = build(cfg.conv_layers)
    model.load_state_dict(state_dict)
    return model.eval()


def explain_one(model: nn.Module, image: torch.Tensor, cfg: Config) -> dict:
    """Every method's map of one test image (1, 1, H, W) for the predicted class, scaled for
    drawing, with the class probabilities and IG's convergence delta."""
    with torch.no_grad(), attribution.evaluating(model):
        probs = F.softmax(model(image), 1)[0]
    target = probs.argmax().reshape(1)
    maps = scaled(all_maps(model, image, target, cfg))
    _, delta = attribution.integrated_gradients(
        model, image, int(target), attribution.baseline_images(image, cfg.baseline, cfg.seed), cfg.ig_steps
    )
    return {"maps": {m: v[0] for m, v in maps.items()}, "probs": to_numpy(probs), "delta": delta}


def faithfulness(model, x, target, method: str, cfg: Config) -> dict:
    """Mean infidelity (attributions normalised to their best scale, lower is better) and
    sensitivity_max (radius 0.02, lower is steadier) of one method over the images."""

    def explain(inputs, target):
        if isinstance(inputs, tuple):  # sensitivity_max hands inputs over as a tuple
            return (explain(inputs[0], target),)
        base = attribution.baseline_images(inputs, cfg.baseline, cfg.seed)
        torch.manual_seed(cfg.seed)
        maps = attribution.attribute(
            method, model, inputs, target, base, last_conv_act(model), cfg.ig_steps, cfg.noise, cfg.samples
        )
        return maps.unsqueeze(1)  # back to (N, 1, H, W), like the inputs

    def nudge(inputs):
        noise = 0.1 * torch.randn_like(inputs)
        return noise, inputs - noise

    torch.manual_seed(cfg.seed)
    attr = explain(x, target)
    with attribution.evaluating(model):
        infid = infidelity(model, nudge, x, attr, target=target, n_perturb_samples=16, normalize=True)
        sens = sensitivity_max(explain, x, perturb_radius=0.02, n_perturb_samples=4, target=target)
    return {"infidelity": float(infid.mean()), "sensitivity": float(sens.mean())}
