"""Chapter 18, second experiment — adversarial examples, and training against them.

Two copies of the same small CNN learn the 28×28 digits side by side: one on the images as
they are, one adversarially (half of each batch's loss on FGSM-perturbed copies, from a random
start, as in Wong et al., 2020, "Fast is better than free"). Then Captum's `captum.robust`
attacks both: FGSM (one step along the gradient's sign) and PGD (several smaller steps,
projected back into the ε-ball), at every ε of a grid. The learner sees accuracy fall with ε,
the perturbation and the attacked image, and Integrated Gradients before and after the attack.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from captum.robust import FGSM, PGD
from torch import nn
from torch.nn import functional as F

from labs import convnets
from labs.core import attribution, budget
from labs.core.compare import side_by_side
from labs.core.config import check, knob
from labs.core.control import log
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.phases import Plan, descend, minibatches
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy
from labs.saliency import BATCH, LEARNING_RATE, SIDE, accuracy, build, digits, per_epoch

PREFERS_GPU = True
VARIANTS = {"standard": "standard", "adversarial": "adversarial training"}
EPSILONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # pixels are in [0, 1]
ATTACKED = 300  # test images attacked at each ε: accuracy to about ±3 points
SHOWN = 4  # attacked examples drawn
CONV_LAYERS = 3
ATTACKS = ("FGSM", "PGD")


@dataclass(frozen=True)
class Config:
    variants: tuple = knob(
        tuple(VARIANTS),
        "Compare",
        "The same CNN trained on clean images, and on clean plus FGSM-attacked ones.",
        choices=tuple(VARIANTS),
        multi=True,
        labels=VARIANTS,
    )
    epsilon: float = knob(
        0.15,
        "ε",
        "The most any pixel may change (pixels run from 0 to 1); adversarial training uses it too.",
        lo=0.0,
        hi=0.3,
        step=0.01,
    )
    pgd_steps: int = knob(
        10, "PGD steps", "Steps of size 2.5ε/steps, each projected into the ε-ball.", lo=1, hi=40, step=1
    )
    epochs: int = knob(3, "Epochs", "Over 4,000 training digits.", lo=1, hi=30, step=1)
    seed: int = knob(0, "Seed", "Same seed, same run.", lo=0, hi=9999, step=1)


def cost(cfg: Config) -> budget.Cost:
    """Per variant: the CNN's steps (an adversarial step is two forward-backwards), then each ε
    of the grid attacks ATTACKED images with FGSM and PGD."""
    cnn = convnets.cost(convnets.Config(conv_layers=CONV_LAYERS, channels=8, batch_size=BATCH))
    train_steps = cfg.epochs * per_epoch()
    attack_passes = ATTACKED * (1 + cfg.pgd_steps) / BATCH  # in batches' worth of forward-backward
    n = len(EPSILONS) + 1
    flops = (cnn.step_flops * 2 * train_steps + attack_passes * cnn.step_flops * n) / (train_steps + n)
    one = budget.Cost(
        params=cnn.params,
        activations=cnn.activations * ATTACKED / BATCH,
        steps=train_steps + n,
        step_flops=flops,
        step_ops=cnn.step_ops * 2,
        data=cnn.data,
        evaluation=cnn.evaluation,
        kind="conv",
    )
    return budget.total([one] * max(1, len(cfg.variants)))


def train(cfg: Config, device: torch.device):
    check(cfg)
    yield from side_by_side({VARIANTS[k]: train_one(k, cfg, device) for k in cfg.variants}, device)


def fgsm_step(model, x, y, eps: float, g: torch.Generator) -> torch.Tensor:
    """One FGSM step of size 1.25ε from a uniformly random point of the ε-ball, clipped back
    into the ball and to [0, 1]: cheap adversarial examples that do not collapse to the
    "catastrophic overfitting" a plain FGSM step from x invites."""
    start = (torch.rand(x.shape, generator=g).to(x) * 2 - 1) * eps
    x_adv = (x + start).clamp(0, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
    x_adv = x_adv.detach() + 1.25 * eps * grad.sign()
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)


def attack(model, x, y, eps: float, method: str, pgd_steps: int = 10) -> torch.Tensor:
    """The attacked images: Captum's FGSM, or PGD from a random start (without it, PGD can do
    worse than one FGSM step at large ε: its first small step is the same sign direction)."""
    if eps <= 0:
        return x.clone()
    # Captum's default loss is -log(output): right for a model that outputs probabilities,
    # silently wrong for logits (the log of a negative logit is NaN). Ours outputs logits.
    loss = nn.CrossEntropyLoss(reduction="none")
    with attribution.evaluating(model), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
        if method == "FGSM":
            fgsm = FGSM(model, loss_func=loss, lower_bound=0.0, upper_bound=1.0)
            return fgsm.perturb(x, eps, target=y).detach()
        step = 2.5 * eps / pgd_steps
        pgd = PGD(model, loss_func=loss, lower_bound=0.0, upper_bound=1.0)
        return pgd.perturb(x, eps, step, pgd_steps, target=y, random_start=True).detach()


def robust_accuracy(model, x, y, eps: float, method: str, pgd_steps: int = 10) -> float:
    attacked = attack(model, x, y, eps, method, pgd_steps)
    return accuracy(model, attacked, y)


def train_one(kind: str, cfg: Config, device: torch.device):
    g = seed_everything(cfg.seed)  # each variant: the same data, batches and initial weights
    ds = digits(cfg.seed)
    X, y = ds.X_train.to(device), ds.y_train.to(device)
    X_test, y_test = ds.X_test.to(device), ds.y_test.to(device)
    X_att, y_att = X_test[:ATTACKED], y_test[:ATTACKED]
    model = build(CONV_LAYERS).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    n_train = cfg.epochs * per_epoch()
    plan = Plan(n_train + len(EPSILONS) + 1)
    cadence = Cadence(n_train, max_snaps=20, min_seconds=0.2)
    notes = [ds.note] if ds.note else []
    watch = LossWatch()
    for step, _, xb, yb in minibatches(plan, n_train, X, y, g, BATCH):
        loss = F.cross_entropy(model(xb), yb)
        if kind == "adversarial" and cfg.epsilon > 0:
            loss = 0.5 * loss + 0.5 * F.cross_entropy(model(fgsm_step(model, xb, yb, cfg.epsilon, g)), yb)
        descend(opt, loss)
        log(step, train_loss=loss)
        if cadence.due(step):
            watch.check(step, loss=loss)
            metrics = {
                "epoch": step / per_epoch(),
                "test_acc": accuracy(model, X_test, y_test),
                "fgsm_acc": robust_accuracy(model, X_att, y_att, cfg.epsilon, "FGSM"),
            }
            yield Snapshot(step, plan.total, metrics, notes=notes)
    model.eval()
    curve = {"eps": [], **{a: [] for a in ATTACKS}}
    for eps, _ in zip(EPSILONS, plan.take(len(EPSILONS))):
        if plan.ended:
            break
        curve["eps"].append(eps)
        for method in ATTACKS:
            curve[method].append(robust_accuracy(model, X_att, y_att, eps, method, cfg.pgd_steps))
        yield Snapshot(plan.step, plan.total, view={"robustness": {k: list(v) for k, v in curve.items()}})
    for _ in plan.take(1):
        if plan.ended:
            break
        view = {
            "examples": examples(model, X_test[:SHOWN], y_test[:SHOWN], cfg.epsilon, "PGD", cfg.pgd_steps)
        }
        metrics = {
            f"{a.lower()}_acc_at_eps": robust_accuracy(model, X_att, y_att, cfg.epsilon, a, cfg.pgd_steps)
            for a in ATTACKS
        }
        metrics["clean_acc"] = accuracy(model, X_att, y_att)
        yield Snapshot(plan.step, plan.total, metrics, view=view)
    plan.close()
    model.train()
    yield Snapshot(plan.step, plan.total, final=True, state_dict=cpu_state_dict(model))


def examples(model, x, y, eps: float, method: str, pgd_steps: int = 10) -> dict:
    """A few test images attacked: the perturbation, the attacked image, the predictions and
    their confidence before and after, and Integrated Gradients (from black) of the true class
    before and after: what the model now looks at."""
    attacked = attack(model, x, y, eps, method, pgd_steps)
    with torch.no_grad(), attribution.evaluating(model):
        before, after = (F.softmax(model(v), 1) for v in (x, attacked))
    ig = {}
    for name, v in (("before", x), ("after", attacked)):
        raw = attribution.attribute("Integrated Gradients", model, v, y, torch.zeros_like(v), ig_steps=32)
        ig[name] = np.stack([attribution.normalize_attribution(a) for a in to_numpy(raw)])
    return {
        "epsilon": eps,
        "method": method,
        "images": to_numpy(x[:, 0]),
        "perturbation": to_numpy((attacked - x)[:, 0]),
        "attacked": to_numpy(attacked[:, 0]),
        "labels": to_numpy(y).astype(int),
        "before": to_numpy(before.argmax(1)).astype(int),
        "before_conf": to_numpy(before.max(1).values),
        "after": to_numpy(after.argmax(1)).astype(int),
        "after_conf": to_numpy(after.max(1).values),
        "ig_before": ig["before"],
        "ig_after": ig["after"],
    }


def load(cfg: Config, state_dicts: dict) -> dict:
    """The trained nets by label, in eval mode."""
    from labs.core.compare import load_variants

    return load_variants(state_dicts, VARIANTS, lambda _: build(CONV_LAYERS))


__all__ = ["SIDE", "Config", "attack", "cost", "examples", "load", "train"]
