"""Chapter 22's measures of a trained net on the held-out deliveries (labs/ethics.py): each
group's error, false positive and false negative rates, the parity and opportunity gaps,
calibration by group, B's own threshold for equal opportunity, and which columns carry the
difference between the groups (Integrated Gradients)."""

from __future__ import annotations

import math

import torch
from torch import nn

from labs.deliveries import DISTRICTS, NUMERIC, Prepared, inputs_of, uses_group

CALIBRATION_BINS = 5


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
def measure(model: nn.Module, data: Prepared, remedy: str) -> tuple[dict, dict]:
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


def group_signal(model: nn.Module, data: Prepared, remedy: str) -> dict[str, float]:
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
