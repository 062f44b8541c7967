"""Chapter 20's detector: one-stage, a grid of cells over the image (in the spirit of YOLO and
CenterNet). A small CNN shrinks the 64×64 image to a G×G grid; every cell predicts
- objectness: how likely an object's centre lies in or near this cell,
- a class (circle, square, triangle),
- a box: its centre as an offset from the cell's centre (up to two cells away) and its width
  and height as multiples of 16 pixels, on a log scale.

Training targets follow CenterNet: the cell holding an object's centre has objectness 1, its
neighbours a Gaussian share of it, so they also learn to see the object, and they learn its
box too. At test time they are duplicates: non-maximum suppression keeps the best-scored box
of each overlapping group (torchvision's `batched_nms`, per class). Two objects whose centres
fall in one cell can only be one detection: a coarse grid misses touching objects.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms, box_iou, generalized_box_iou_loss

from labs.detection_scenes import CLASSES, SIDE

REFERENCE = 16.0  # pixels: a box of width exp(0) * REFERENCE
SIGMA = 0.75  # cells: the Gaussian spread of objectness around an object's centre cell
REACH = 2.0  # cells: how far from its cell a predicted centre may lie
MAX_DETECTIONS = 32  # per image, best scores first


class GridDetector(nn.Module):
    def __init__(self, grid: int, channels: int = 16):
        super().__init__()
        stages = int(math.log2(SIDE // grid)) - 1  # the first layer halves the image already
        layers, c_in = list(_conv(1, channels, stride=2)), channels
        for i in range(stages):
            c_out = channels * 2 ** min(i + 1, 2)
            layers += [*_conv(c_in, c_out, stride=2), *_conv(c_out, c_out)]
            c_in = c_out
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Conv2d(c_in, 1 + len(CLASSES) + 4, 3, padding=1)
        self.grid = grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, G, G, 8): objectness logit, 3 class logits, 4 box numbers, per cell."""
        return self.head(self.backbone(images)).permute(0, 2, 3, 1)


def _conv(c_in: int, c_out: int, stride: int = 1) -> tuple[nn.Module, ...]:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()


def cell_size(grid: int) -> float:
    return SIDE / grid


def decode_boxes(out: torch.Tensor) -> torch.Tensor:
    """(B, G, G, 4) boxes (x0, y0, x1, y1) in pixels from the head's four box numbers."""
    grid = out.shape[1]
    s = cell_size(grid)
    rows, cols = torch.meshgrid(
        torch.arange(grid, device=out.device), torch.arange(grid, device=out.device), indexing="ij"
    )
    cx = (cols + 0.5 + REACH * torch.tanh(out[..., 4])) * s
    cy = (rows + 0.5 + REACH * torch.tanh(out[..., 5])) * s
    w = REFERENCE * torch.exp(out[..., 6].clamp(-4, 4))
    h = REFERENCE * torch.exp(out[..., 7].clamp(-4, 4))
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def targets(boxes: list[torch.Tensor], labels: list[torch.Tensor], grid: int, device) -> dict:
    """Per image and cell: objectness target (B, G, G), the class and box each cell learns
    (B, G, G) and (B, G, G, 4), and which cells learn them (B, G, G) bool: the centre cell and
    its neighbours. Where two objects claim one cell, the larger wins (the other is lost)."""
    b, s = len(boxes), cell_size(grid)
    heat = torch.zeros(b, grid, grid)
    cls = torch.zeros(b, grid, grid, dtype=torch.long)
    box = torch.zeros(b, grid, grid, 4)
    area = torch.zeros(b, grid, grid)  # of the object a cell learns, to let the larger win
    centres = (torch.arange(grid) + 0.5)[None, :]
    for i, (bx, lb) in enumerate(zip(boxes, labels)):
        for (x0, y0, x1, y1), label in zip(bx.tolist(), lb.tolist()):
            cx, cy = (x0 + x1) / 2 / s, (y0 + y1) / 2 / s
            d2 = (centres - cx) ** 2 + (centres.T - cy) ** 2  # (G rows, G cols)
            heat[i] = torch.maximum(heat[i], torch.exp(-d2 / (2 * SIGMA**2)))
            heat[i, int(cy), int(cx)] = 1.0
            near = (d2 <= 2.0) & (area[i] < (x1 - x0) * (y1 - y0))
            cls[i][near], area[i][near] = label, (x1 - x0) * (y1 - y0)
            box[i][near] = torch.tensor([x0, y0, x1, y1])
    learns = area > 0
    return {
        "heat": heat.to(device),
        "cls": cls.to(device),
        "box": box.to(device),
        "learns": learns.to(device),
    }


LOSSES = ("objectness", "class", "box")


def loss_parts(out: torch.Tensor, target: dict, box_loss: str) -> dict[str, torch.Tensor]:
    """Objectness: binary cross-entropy against the Gaussian targets, over every cell. Class
    and box: on the cells that learn an object. Box: L1 on the corners (in image widths), or
    generalized IoU (1 - GIoU, torchvision's)."""
    learns = target["learns"]
    parts = {"objectness": F.binary_cross_entropy_with_logits(out[..., 0], target["heat"])}
    if not learns.any():
        zero = out.sum() * 0
        return parts | {"class": zero, "box": zero}
    parts["class"] = F.cross_entropy(out[..., 1:4][learns], target["cls"][learns])
    predicted, truth = decode_boxes(out)[learns], target["box"][learns]
    if box_loss == "giou":
        parts["box"] = generalized_box_iou_loss(predicted, truth, reduction="mean")
    else:
        parts["box"] = F.l1_loss(predicted / SIDE, truth / SIDE) * 4
    return parts


@torch.no_grad()
def detect(out: torch.Tensor, score_threshold: float, nms_iou: float | None) -> list[dict]:
    """Per image: boxes, scores and labels above the threshold, after NMS (per class) unless
    nms_iou is None. A score is objectness × the class's probability."""
    boxes = decode_boxes(out).flatten(1, 2)
    probs = out[..., 1:4].softmax(-1).flatten(1, 2)
    conf, labels = probs.max(-1)
    scores = torch.sigmoid(out[..., 0]).flatten(1) * conf
    found = []
    for b in range(len(out)):
        keep = (scores[b] >= score_threshold).nonzero()[:, 0]
        if nms_iou is not None and len(keep):
            keep = keep[batched_nms(boxes[b, keep], scores[b, keep], labels[b, keep], nms_iou)]
        keep = keep[scores[b, keep].argsort(descending=True)][:MAX_DETECTIONS]
        found.append(
            {"boxes": boxes[b, keep], "scores": scores[b, keep], "labels": labels[b, keep], "cells": keep}
        )
    return found


def claims(det: dict, bx: torch.Tensor, lb: torch.Tensor, iou: float = 0.5):
    """One image's detections, best score first: for each, the object it claims (the unclaimed
    object of its class it overlaps most, if by IoU ≥ iou) or -1 (a miss, or a duplicate of an
    object already claimed), and that IoU. Greedy, so one detection at a time, over plain
    floats: an untrained detector's 4,000 detections took 75 ms as tensor ops, a few here."""
    n = len(det["boxes"])
    if not len(bx) or not n:
        return [(-1, 0.0)] * n
    same_class = det["labels"].cpu()[:, None] == lb[None, :]
    fits = (box_iou(det["boxes"].cpu(), bx) * same_class).tolist()  # float32 values, as floats
    least = float(torch.tensor(iou, dtype=torch.float32))  # compared in float32, as tensors were
    claimed = [False] * len(bx)
    picks = []
    for row in fits:
        best, most = 0, -1.0
        for j, fit in enumerate(row):  # the first of the largest, as argmax picks it
            fit = 0.0 if claimed[j] else fit
            if fit > most:
                best, most = j, fit
        if most >= least:
            claimed[best] = True
            picks.append((best, most))
        else:
            picks.append((-1, 0.0))
    return picks


def match(found: list[dict], boxes: list[torch.Tensor], labels: list[torch.Tensor], iou: float = 0.5):
    """Every detection of every image: (scores, is_true, ious of the true ones, the number of
    objects). A detection is true when it claims an object (`claims`)."""
    return _matched(found, [claims(d, b, lb, iou) for d, b, lb in zip(found, boxes, labels)], boxes)


def _matched(found: list[dict], picks: list[list], boxes: list[torch.Tensor], keep=None):
    """`match` from each image's claims, of the detections `keep` says (all if None)."""
    scores, hits, ious = [], [], []
    for i, (det, mine) in enumerate(zip(found, picks)):
        det_scores = det["scores"].tolist()
        for k, (obj, overlap) in enumerate(mine):
            if keep is not None and not keep[i][k]:
                continue
            scores.append(det_scores[k])
            hits.append(obj >= 0)
            if obj >= 0:
                ious.append(overlap)
    return scores, hits, ious, sum(len(b) for b in boxes)


def average_precision(scores: list[float], hits: list[bool], n_objects: int) -> tuple[float, list, list]:
    """Area under the precision–recall curve (every point, precision made non-increasing as
    PASCAL VOC does), and the curve itself (recall, precision) as the threshold falls."""
    if not n_objects:
        return math.nan, [], []
    order = sorted(range(len(scores)), key=lambda k: -scores[k])
    tp = fp = 0
    recall, precision = [], []
    for k in order:
        tp, fp = tp + hits[k], fp + (not hits[k])
        recall.append(tp / n_objects)
        precision.append(tp / (tp + fp))
    envelope = precision[:]
    for k in range(len(envelope) - 2, -1, -1):
        envelope[k] = max(envelope[k], envelope[k + 1])
    ap, last = 0.0, 0.0
    for r, p in zip(recall, envelope):
        ap, last = ap + (r - last) * p, r
    return ap, recall, precision


def evaluate(
    found: list[dict], boxes: list[torch.Tensor], labels: list[torch.Tensor], threshold: float
) -> dict:
    """mAP@0.5 (mean over the classes of their AP), the pooled precision–recall curve, precision
    and recall of the detections at or above `threshold`, and the mean IoU of the true ones."""
    # a detection claims objects of its own class only, so each class's claims are the pooled
    # ones of its detections: matched once, then read per class
    picks = [claims(d, b, lb) for d, b, lb in zip(found, boxes, labels)]
    aps = []
    for c in range(len(CLASSES)):
        ofclass = [(d["labels"] == c).tolist() for d in found]
        scores, hits, _, n = _matched(found, picks, [b[lb == c] for b, lb in zip(boxes, labels)], ofclass)
        if n:
            aps.append(average_precision(scores, hits, n)[0])
    scores, hits, ious, n = _matched(found, picks, boxes)
    _, recall, precision = average_precision(scores, hits, n)
    kept = [h for s, h in zip(scores, hits) if s >= threshold]
    return {
        "mAP@0.5": float(sum(aps) / len(aps)) if aps else 0.0,
        "precision": sum(kept) / len(kept) if kept else 0.0,
        "recall": sum(kept) / n if n else 0.0,
        "box IoU": sum(ious) / len(ious) if ious else 0.0,
        "curve": {"recall": recall, "precision": precision},
    }
