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

The second experiment (labs/feedback_loop.py): a recommender retrained on its own
recommendations concentrates the clicks on fewer items round after round; exploration slows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
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
from labs.tables import split

PREFERS_GPU = False  # an MLP on a few thousand rows: overhead-bound, as fast on a CPU
REMEDIES = {
    "none": "no remedy",
    "drop": "group column dropped",
    "reweigh": "reweighed",
    "thresholds": "per-group thresholds",
}
DISTRICTS, OWN_DISTRICTS_B = 10, (7, 8, 9)  # B lives mostly in the last three districts
NUMERIC = ("distance_km", "parcel_kg", "hour", "rain")
FEATURES = (*NUMERIC, "district", "group")  # as the attributions name them (district: 10 columns)
CALIBRATION_BINS = 5


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


# ---------------------------------------------------------------- the generated deliveries


@dataclass(frozen=True)
class Deliveries:
    x: np.ndarray  # (rows, 4 numeric + 10 district + 1 group), float32, numeric standardized later
    late: np.ndarray  # (rows,) 0/1 as recorded
    group: np.ndarray  # (rows,) 0 = A, 1 = B


@lru_cache(maxsize=8)
def deliveries(
    rows: int, group_share: float, proxy: float, label_gap: float, noise_a: float, noise_b: float, seed: int
) -> Deliveries:
    """The recorded deliveries. Lateness: distance, rain, weight and the hour, with B's roads
    weighing distance less and the hour more, plus the recorded gap for B; then each group's
    share of labels flipped."""
    rng = np.random.default_rng((seed, 22))
    group = (rng.random(rows) < group_share).astype(np.int64)
    distance = rng.uniform(1, 30, rows)
    parcel = rng.lognormal(1.0, 0.6, rows)
    hour = rng.uniform(8, 20, rows)
    rain = (rng.random(rows) < 0.3).astype(np.float64)
    own = np.where(group == 1, rng.choice(OWN_DISTRICTS_B, rows), rng.integers(0, OWN_DISTRICTS_B[0], rows))
    district = np.where(rng.random(rows) < proxy, own, rng.integers(0, DISTRICTS, rows))
    b = group == 1
    log_odds = (
        -0.6
        + np.where(b, 0.03, 0.14) * (distance - 15)
        + 0.9 * rain
        + 0.08 * (parcel - 3)
        + np.where(b, 0.3, 0.02) * (hour - 14)
        + label_gap * group
    )
    late = rng.random(rows) < 1 / (1 + np.exp(-log_odds))
    late ^= rng.random(rows) < np.where(b, noise_b, noise_a)
    x = np.concatenate(
        [np.stack([distance, parcel, hour, rain], 1), np.eye(DISTRICTS)[district], group[:, None]], 1
    ).astype(np.float32)
    return Deliveries(x, late.astype(np.int64), group)


def data_for(cfg: Config) -> Deliveries:
    return deliveries(cfg.rows, cfg.group_share, cfg.proxy, cfg.label_gap, cfg.noise_a, cfg.noise_b, cfg.seed)


@dataclass
class Prepared:
    """The deliveries as tensors: numbers standardized with the training rows' statistics."""

    x: torch.Tensor
    late: torch.Tensor
    group: torch.Tensor
    train: torch.Tensor
    val: torch.Tensor


def prepare(d: Deliveries, seed: int, device: torch.device) -> Prepared:
    train, val = split(len(d.late), seed, share=0.25)
    x = d.x.copy()
    mu, sd = x[train, :3].mean(0), x[train, :3].std(0) + 1e-6
    x[:, :3] = (x[:, :3] - mu) / sd
    as_tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return Prepared(as_tensor(x), as_tensor(d.late), as_tensor(d.group), as_tensor(train), as_tensor(val))


def reweighing(late: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Kamiran & Calders' weights: P(group) P(label) / P(group, label) for each row's cell, so
    that in the weighted rows lateness no longer depends on the group."""
    weights = torch.empty(len(late), dtype=torch.float32, device=late.device)
    for g in (0, 1):
        for y in (0, 1):
            cell = (group == g) & (late == y)
            if cell.any():
                expected = (group == g).float().mean() * (late == y).float().mean()
                weights[cell] = expected / cell.float().mean()
    return weights


# ---------------------------------------------------------------- the net


def uses_group(remedy: str) -> bool:
    return remedy != "drop"


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


def inputs_of(x: torch.Tensor, remedy: str) -> torch.Tensor:
    return x if uses_group(remedy) else x[:, :-1]


def build(remedy: str, width: int) -> LateNet:
    return LateNet(len(NUMERIC) + DISTRICTS + int(uses_group(remedy)), width)


# ---------------------------------------------------------------- measuring


def rates(flagged: torch.Tensor, late: torch.Tensor) -> dict[str, float]:
    """One group's numbers: its error, false positive and false negative rates, the share it
    has flagged late and its true positive rate (NaN where a group has no such rows)."""
    flagged, late = flagged.bool(), late.bool()
    mean = lambda t: float(t.float().mean()) if len(t) else math.nan  # noqa: E731
    return {
        "error": mean(flagged != late),
        "FPR": mean(flagged[~late]),
        "FNR": mean(~flagged[late]),
        "flagged": mean(flagged),
        "TPR": mean(flagged[late]),
    }


def b_threshold(p: torch.Tensor, late: torch.Tensor, group: torch.Tensor) -> float:
    """The threshold that gives B the true positive rate A has at 0.5, on these rows."""
    a_tpr = float((p[(group == 0) & (late == 1)] > 0.5).float().mean())
    b_late = p[(group == 1) & (late == 1)]
    if len(b_late) == 0 or math.isnan(a_tpr):
        return 0.5
    # flag the top a_tpr share of B's late deliveries: the (1 - a_tpr) quantile of their scores
    return float(torch.quantile(b_late.double(), min(max(1 - a_tpr, 0.0), 1.0)))


def calibration(p: torch.Tensor, late: torch.Tensor, group: torch.Tensor) -> dict[str, list]:
    """By group: the mean predicted probability and the observed late share in each of
    CALIBRATION_BINS equal-width bins (None for an empty bin)."""
    bins = (p * CALIBRATION_BINS).long().clamp(max=CALIBRATION_BINS - 1)
    out = {}
    for g, name in enumerate(("A", "B")):
        mine = group == g
        predicted, observed = [], []
        for k in range(CALIBRATION_BINS):
            rows = mine & (bins == k)
            n = int(rows.sum())
            predicted.append(float(p[rows].mean()) if n else None)
            observed.append(float(late[rows].float().mean()) if n else None)
        out[name] = {"predicted": predicted, "observed": observed}
    return out


@torch.no_grad()
def measure(model: LateNet, data: Prepared, remedy: str) -> tuple[dict, dict]:
    """Accuracy, each group's rates and the two gaps on the held-out rows (with B's own
    threshold, chosen on the training rows, for the thresholds remedy); and the calibration."""
    model.eval()
    p = torch.sigmoid(model(inputs_of(data.x, remedy)))
    model.train()
    threshold_b = 0.5
    if remedy == "thresholds":
        t = data.train
        threshold_b = b_threshold(p[t], data.late[t], data.group[t])
    v = data.val
    pv, late, group = p[v], data.late[v], data.group[v]
    flagged = pv > torch.where(group == 1, threshold_b, 0.5)
    each = {name: rates(flagged[group == g], late[group == g]) for g, name in enumerate(("A", "B"))}
    metrics = {"accuracy": float((flagged == late.bool()).float().mean())}
    for name, numbers in each.items():
        metrics |= {f"{k} {name}": v for k, v in numbers.items()}
    metrics["parity gap"] = each["B"]["flagged"] - each["A"]["flagged"]
    metrics["opportunity gap"] = each["B"]["TPR"] - each["A"]["TPR"]
    return metrics, {"calibration": calibration(pv, late, group), "threshold_b": threshold_b}


def group_signal(model: LateNet, data: Prepared, remedy: str) -> dict[str, float]:
    """Which features carry the difference between the groups: per feature, the mean Integrated
    Gradients attribution of the log-odds on B's held-out rows minus that on A's (from the
    training rows' average delivery; a district's ten columns summed)."""
    from captum.attr import IntegratedGradients

    x = inputs_of(data.x, remedy)
    v = data.val
    baseline = x[data.train].mean(0, keepdim=True)
    model.eval()
    # of the rows' summed log-odds: rows do not meet in this net, so each row's gradient of the
    # sum is its own, in one backward pass (Captum differentiates each output apart otherwise:
    # 11 s for 2,000 rows here, against 0.04 s)
    summed = lambda rows: model(rows).sum().reshape(1)  # noqa: E731
    attr = IntegratedGradients(summed).attribute(x[v], baselines=baseline, n_steps=32)
    model.train()
    per_feature = {name: attr[:, i] for i, name in enumerate(NUMERIC)}
    per_feature["district"] = attr[:, len(NUMERIC) : len(NUMERIC) + DISTRICTS].sum(1)
    if uses_group(remedy):
        per_feature["group"] = attr[:, -1]
    group = data.group[v]
    return {
        name: float(a[group == 1].mean() - a[group == 0].mean()) if (group == 1).any() else 0.0
        for name, a in per_feature.items()
    }


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
