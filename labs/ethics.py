"""Chapter 22 — Data ethics: bias a model learns, and what fixing it costs.

A generated, plainly synthetic task: will a delivery arrive late? Two groups of customers, A
and B; B is a small share of the rows (the learner sets how small). Three things make a model
treat them differently, each one a knob:

- the recorded labels: B's deliveries were logged late more often, for reasons outside the
  features (`label_gap`, in log-odds): a model that predicts the record well flags B more;
- under-representation: B's deliveries follow other roads (the distance matters less for them,
  the hour more), and with few of B's rows the net mostly learns A's roads;
- label noise that differs by group (a share of each group's labels flipped).

The district a parcel goes to is a proxy: with probability `proxy` it is one of its group's
own districts, so it gives the group away without naming it.

Side by side under one seed, the same net (an MLP) trained four ways: as is; without the group
column ("fairness through unawareness"); with Kamiran & Calders' reweighing (each training row
weighted so that lateness and group are independent in the weighted data); and with a second
decision threshold for B, chosen on the training rows so that B's true positive rate equals
A's (Hardt, Price & Srebro's equal opportunity, as post-processing). Each is measured on the
same held-out rows: accuracy, each group's error, false positive and false negative rates,
calibration, and two gaps: demographic parity (B's share flagged late minus A's) and equal
opportunity (B's true positive rate minus A's). After training, Integrated Gradients says which
features carry the difference between the groups: the group column, or the district when the
column is gone.

The deliveries are labs/deliveries.py, the measures labs/group_measures.py. The second
experiment (labs/feedback_loop.py): a recommender retrained on its own
recommendations concentrates the clicks on fewer items round after round; exploration slows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from labs import feedback_loop
from labs.core import budget
from labs.core.compare import side_by_side
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict
from labs.deliveries import (
    DISTRICTS,
    NUMERIC,
    Deliveries,
    deliveries,
    inputs_of,
    prepare,
    reweighing,
    uses_group,
)
from labs.group_measures import group_signal, measure

PREFERS_GPU = False  # an MLP on a few thousand rows: overhead-bound, as fast on a CPU
REMEDIES = {
    "none": "no remedy",
    "drop": "group column dropped",
    "reweigh": "reweighed",
    "thresholds": "per-group thresholds",
}


@dataclass(frozen=True)
class Config:
    remedies: tuple = knob(
        tuple(REMEDIES),
        "Compare",
        "The same net as is, without the group column, reweighed, and with a threshold of its own for B.",
        choices=tuple(REMEDIES),
        multi=True,
        labels=REMEDIES,
    )
    group_share: float = knob(
        0.15, "Group B's share", "B's share of all deliveries.", lo=0.02, hi=0.5, step=0.01
    )
    proxy: float = knob(
        0.9,
        "Proxy strength",
        "How often a delivery's district is its group's own (0: the district says nothing of the group).",
        lo=0.0,
        hi=1.0,
        step=0.05,
    )
    label_gap: float = knob(
        1.5,
        "Recorded gap (log-odds)",
        "How much more often B's deliveries were logged late, for reasons the features do not show.",
        lo=0.0,
        hi=2.0,
        step=0.1,
    )
    noise_a: float = knob(
        0.0, "Label noise, group A", "Share of A's labels flipped.", lo=0.0, hi=0.3, step=0.01
    )
    noise_b: float = knob(
        0.1, "Label noise, group B", "Share of B's labels flipped.", lo=0.0, hi=0.3, step=0.01
    )
    rows: int = knob(
        8000, "Rows", "Generated deliveries (75% train, 25% held out).", lo=1000, hi=50000, step=500
    )
    width: int = knob(32, "Width", "Units in each of the MLP's two hidden layers.", lo=4, hi=256, step=4)
    learning_rate: float = knob(3e-3, "Learning rate", "Adam's step size.", lo=1e-4, hi=0.1, log=True)
    batch_size: int = knob(128, "Batch size", "Rows per step.", lo=16, hi=2048, step=16)
    epochs: int = knob(15, "Epochs", "Passes over the training rows.", lo=1, hi=300, step=1)
    seed: int = knob(0, "Seed", "Same seed, same deliveries, same split, same start.", lo=0, hi=9999, step=1)


# ---------------------------------------------------------------- the deliveries and the net


def data_for(cfg: Config) -> Deliveries:
    return deliveries(cfg.rows, cfg.group_share, cfg.proxy, cfg.label_gap, cfg.noise_a, cfg.noise_b, cfg.seed)


class LateNet(nn.Module):
    """An MLP from the delivery's columns to the log-odds of 'late'. Without the group column
    (the "drop" remedy) its first layer simply has one input fewer."""

    def __init__(self, inputs: int, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]


def build(remedy: str, width: int) -> LateNet:
    return LateNet(len(NUMERIC) + DISTRICTS + int(uses_group(remedy)), width)


# ---------------------------------------------------------------- training


def cost(cfg: Config) -> budget.Cost:
    inputs = len(NUMERIC) + DISTRICTS + 1
    params = inputs * cfg.width + cfg.width**2 + 2 * cfg.width + 1
    steps_total = math.ceil(0.75 * cfg.rows / cfg.batch_size) * cfg.epochs * len(cfg.remedies)
    return budget.Cost(
        params * len(cfg.remedies),
        cfg.batch_size * (inputs + 2 * cfg.width),
        steps_total,
        6 * params * cfg.batch_size,
        60,  # a step's operations, and its share of the snapshots' measuring passes
        data=cfg.rows * (inputs + 2) * 4,
    )


def train(cfg: Config, device: torch.device):
    """Every chosen remedy side by side, each a run of `train_one` on the same deliveries."""
    check(cfg)
    if not cfg.remedies:
        from labs.core.config import ConfigError

        raise ConfigError("Choose at least one way to train in Compare.")
    data = data_for(cfg)
    shares = f"{(data.group == 1).mean():.0%}"
    notes = [
        f"{len(data.late):,} deliveries ({shares} group B), {data.late.mean():.0%} recorded late: "
        f"A {data.late[data.group == 0].mean():.0%}, B {data.late[data.group == 1].mean():.0%}."
    ]
    runs = {
        REMEDIES[r]: train_one(r, cfg, data, device, notes if i == 0 else [])
        for i, r in enumerate(cfg.remedies)
    }
    yield from side_by_side(runs, device)


def train_one(remedy: str, cfg: Config, deliveries_: Deliveries, device: torch.device, notes: list[str]):
    """Adam on (weighted) cross-entropy over mini-batches; each snapshot measures the held-out
    rows; the last adds what the features say of the groups."""
    g = seed_everything(cfg.seed)
    data = prepare(deliveries_, cfg.seed, device)
    model = build(remedy, cfg.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    weights = (
        reweighing(data.late[data.train], data.group[data.train])
        if remedy == "reweigh"
        else torch.ones(len(data.train), device=device)
    )
    x, late = inputs_of(data.x, remedy)[data.train], data.late[data.train].float()
    per_epoch = math.ceil(len(late) / cfg.batch_size)
    total = per_epoch * cfg.epochs
    cadence = Cadence(total, max_snaps=60, min_seconds=0.15)
    watch = LossWatch()
    step, order = 0, torch.empty(0, dtype=torch.long)
    for step in steps(total):
        at = (step - 1) % per_epoch
        if at == 0:
            order = torch.randperm(len(late), generator=g).to(device)
        rows = order[at * cfg.batch_size : (at + 1) * cfg.batch_size]
        each = F.binary_cross_entropy_with_logits(model(x[rows]), late[rows], reduction="none")
        loss = (each * weights[rows]).sum() / weights[rows].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log(step, train_loss=loss)
        if cadence.due(step):
            watch.check(step, loss=loss)
            metrics, view = measure(model, data, remedy)
            yield Snapshot(step, total, metrics | {"epoch": step / per_epoch}, view=view, notes=notes)
            notes = []
    yield Snapshot(step, total, view={"group_signal": group_signal(model, data, remedy)})
    yield Snapshot(step, total, final=True, state_dict=cpu_state_dict(model))


# ---------------------------------------------------------------- questions


def _last(view, remedy: str, name: str) -> float:
    return view.last(f"{REMEDIES[remedy]}: {name}", math.nan)


def _parity_left_without_the_column(view) -> tuple[str, str]:
    before, after = _last(view, "none", "parity gap"), _last(view, "drop", "parity gap")
    left = after / before if before else math.nan
    answer = "most of it" if left > 0.6 else "about half" if left > 0.3 else "almost none"
    return (
        answer,
        f"Parity gap (B − A): {before:+.2f} with the group column, {after:+.2f} without ({left:.0%} left).",
    )


def _accuracy_after_reweighing(view) -> tuple[str, str]:
    before, after = _last(view, "none", "accuracy"), _last(view, "reweigh", "accuracy")
    gaps = _last(view, "none", "parity gap"), _last(view, "reweigh", "parity gap")
    answer = (
        "it falls a little"
        if after < before - 0.002
        else "it rises"
        if after > before + 0.002
        else "it stays the same"
    )
    return answer, (
        f"Accuracy {before:.1%} as is, {after:.1%} reweighed; parity gap {gaps[0]:+.2f} → {gaps[1]:+.2f}."
    )


def _b_threshold_direction(view) -> tuple[str, str]:
    info = view.view.get("variants", {}).get(REMEDIES["thresholds"], {})
    threshold = info.get("threshold_b", math.nan)
    answer = "up" if threshold > 0.5 else "down" if threshold < 0.5 else "it stays at 0.5"
    before, after = _last(view, "none", "opportunity gap"), _last(view, "thresholds", "opportunity gap")
    return answer, (
        f"B's threshold: {threshold:.2f} (A's: 0.50); opportunity gap {before:+.2f} as is, "
        f"{after:+.2f} with B's threshold."
    )


QUESTIONS = [
    Question(
        "The district gives a delivery's group away 9 times in 10. Drop the group column: how much "
        "of the gap between the share of A's and B's deliveries flagged late is left?",
        ("most of it", "about half", "almost none"),
        {"proxy": 0.9, "remedies": ("none", "drop")},
        _parity_left_without_the_column,
        "The net no longer reads the group, but the district says it for them: a model that "
        "predicts the record well finds the group wherever the record hides it. Set Proxy "
        "strength to 0 and the same remedy removes nearly all of the gap.",
    ),
    Question(
        "Reweighing makes lateness independent of the group in the training data. What happens "
        "to accuracy on the held-out record?",
        ("it falls a little", "it stays the same", "it rises"),
        {"remedies": ("none", "reweigh")},
        _accuracy_after_reweighing,
        "The held-out record has the same gap as the training record, so a model that stops "
        "reproducing it agrees with the record less often. Whether the record is what the "
        "model should agree with is the question the accuracy cannot answer.",
    ),
    Question(
        "B's own threshold must make a late delivery of B's as likely to be flagged as one of A's. "
        "From A's 0.5, does B's threshold go up or down?",
        ("up", "down", "it stays at 0.5"),
        {"remedies": ("none", "thresholds")},
        _b_threshold_direction,
        "The recorded gap raises every score of B's, so at 0.5 B's late deliveries are flagged "
        "more often than A's: equal opportunity asks more of a B delivery before it is flagged. "
        "It evens out the late deliveries caught, not the share flagged, which stays apart.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
FEEDBACK = Experiment(feedback_loop.FeedbackConfig, feedback_loop.train, feedback_loop.cost, PREFERS_GPU)
EXPERIMENTS = {"bias": EXPERIMENT, "feedback": FEEDBACK}  # the page's two Train buttons
