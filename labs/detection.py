"""Chapter 20 — Object detection.

Segmentation labels pixels; detection names objects and draws their boxes. Generated scenes
(labs/detection_scenes.py: 1-4 shapes, some touching, clutter strokes) and a one-stage grid
detector (labs/detector.py). Side by side under one seed, detectors that differ in one thing:
the box loss (generalized IoU or L1 on the corners) or the grid (8×8 or 4×4 cells).

Live, for each: the loss in its three parts, mAP@0.5 and the precision–recall curve on held-out
scenes, and, on one held-out scene, the objectness of every cell with the boxes above the score
threshold before and after non-maximum suppression. At the end: precision and recall with and
without NMS, and recall on the objects that touch another. After training, any detection can be
explained: Integrated Gradients of its cell's class score to the image's pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from captum.attr import IntegratedGradients

from labs import detector
from labs.core import budget
from labs.core.attribution import evaluating
from labs.core.compare import side_by_side
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy
from labs.detection_scenes import CLASSES, SIDE, TEST, TRAIN, DrawnScenes, scenes

PREFERS_GPU = True
VARIANTS = {"giou": "GIoU loss, 8×8 grid", "l1": "L1 loss, 8×8 grid", "coarse": "GIoU loss, 4×4 grid"}
SETUPS = {"giou": ("giou", 8), "l1": ("l1", 8), "coarse": ("giou", 4)}  # (box loss, grid)
TEST_SCENES = 128
LOW = 0.05  # detections kept for the precision–recall curve and mAP, whatever the threshold
SHOWN = 0  # the held-out scene drawn live


@dataclass(frozen=True)
class Config:
    variants: tuple = knob(
        ("giou", "l1"),
        "Compare",
        "Detectors that differ in one thing: the box loss, or the grid's coarseness.",
        choices=tuple(VARIANTS),
        multi=True,
        labels=VARIANTS,
    )
    score_threshold: float = knob(
        0.3, "Score threshold", "Detections scored below this are dropped.", lo=0.05, hi=0.95, step=0.05
    )
    nms_iou: float = knob(
        0.5,
        "NMS IoU threshold",
        "Of two boxes of one class overlapping more than this, the lower-scored is suppressed.",
        lo=0.1,
        hi=0.9,
        step=0.05,
    )
    clutter: int = knob(2, "Clutter", "Strokes per scene as bright or dark as objects.", lo=0, hi=8, step=1)
    touching: float = knob(
        0.3, "Touching", "Share of objects placed right beside the one before.", lo=0.0, hi=1.0, step=0.1
    )
    channels: int = knob(16, "Channels", "Of the first layer (then 2×, 4×).", lo=4, hi=64, step=4)
    train_scenes: int = knob(800, "Training scenes", "Generated once per seed.", lo=100, hi=5000, step=100)
    learning_rate: float = knob(3e-3, "Learning rate", "Adam's step size.", lo=1e-4, hi=0.03, log=True)
    batch_size: int = knob(16, "Batch size", "Scenes per step.", lo=2, hi=128, step=2)
    steps: int = knob(500, "Steps", "For each detector.", lo=20, hi=10000, step=20)
    seed: int = knob(0, "Seed", "Same seed, same scenes, same start.", lo=0, hi=9999, step=1)


@lru_cache(maxsize=2)
def dataset(train_scenes: int, clutter: int, touching: float, seed: int) -> dict:
    """Training scenes (each made as a batch first draws it) and held-out scenes, made once per
    setting (~0.5 ms a scene) and shared by the detectors of a run; which held-out objects
    touch another."""
    Xt, Bt, Lt = scenes(TEST_SCENES, seed, TEST, clutter, touching)
    return {
        "train": DrawnScenes(train_scenes, seed, TRAIN, clutter, touching),
        "X_test": Xt,
        "B_test": Bt,
        "L_test": Lt,
        "touch": [touches(b) for b in Bt],
    }


def touches(boxes: torch.Tensor, gap: float = 3.0) -> torch.Tensor:
    """Per object: whether another's box comes within `gap` pixels of its own."""
    grown = boxes + torch.tensor([-gap, -gap, gap, gap])
    near = detector.box_iou(grown, boxes) > 0
    near.fill_diagonal_(False)
    return near.any(1)


def build(variant: str, channels: int) -> detector.GridDetector:
    return detector.GridDetector(SETUPS[variant][1], channels)


def load(cfg: Config, state_dicts: dict) -> dict[str, detector.GridDetector]:
    models = {}
    for v, name in VARIANTS.items():
        if name in state_dicts:
            models[name] = build(v, cfg.channels)
            models[name].load_state_dict(state_dicts[name])
            models[name].eval()
    return models


def cost(cfg: Config) -> budget.Cost:
    """Each detector: a 3×3 conv at full size, then pairs of convs at each halving to the grid."""
    c, b, px = cfg.channels, cfg.batch_size, SIDE * SIDE
    flops = params = acts = 0.0
    for v in cfg.variants or ("giou",):
        stages = int(math.log2(SIDE // SETUPS[v][1]))
        f, p, a, c_in, size = 9 * c * px, 9 * c, c * px, c, px
        for i in range(stages):
            c_out, size = c * 2 ** min(i + 1, 2), size / 4
            f += 9 * size * (c_in * c_out + c_out * c_out)
            p += 9 * (c_in * c_out + c_out * c_out)
            a += 2 * c_out * size
            c_in = c_out
        flops, params, acts = flops + f, params + p + 9 * c_in * 8, acts + a
    return budget.Cost(
        params,
        b * acts * 2,
        cfg.steps,
        3 * 2 * b * flops,
        40 * len(cfg.variants or "g"),
        data=(cfg.train_scenes + TEST_SCENES) * px,
        evaluation=TEST_SCENES * acts,
    )


def train(cfg: Config, device: torch.device):
    """Each chosen detector side by side (labs/core/compare.py), each a run of `train_one`."""
    check(cfg)
    yield from side_by_side({VARIANTS[v]: train_one(v, cfg, device) for v in cfg.variants}, device)


def train_one(variant: str, cfg: Config, device: torch.device):
    """Adam on random batches of the training scenes; the three losses summed."""
    g = seed_everything(cfg.seed)
    data = dataset(cfg.train_scenes, cfg.clutter, cfg.touching, cfg.seed)
    box_loss, grid = SETUPS[variant]
    model = build(variant, cfg.channels).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    cadence = Cadence(cfg.steps, max_snaps=30, min_seconds=0.5)
    step, watch = 0, LossWatch()
    for step in steps(cfg.steps):
        index = torch.randint(0, len(data["train"]), (cfg.batch_size,), generator=g)
        images, boxes, labels = data["train"].batch(index)
        out = model(images.to(device))
        target = detector.targets(boxes, labels, grid, device)
        parts = detector.loss_parts(out, target, box_loss)
        loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log(step, train_loss=loss, **{f"{k} loss": v for k, v in parts.items()})
        watch.see(loss=loss)
        if cadence.due(step):
            watch.check(step)
            yield _snapshot(cfg, model, data, step, final=step == cfg.steps)
    yield Snapshot(step, cfg.steps, final=True, state_dict=cpu_state_dict(model))


@torch.no_grad()
def outputs(model, X: torch.Tensor, device: torch.device, chunk: int = 64) -> torch.Tensor:
    model.eval()
    out = torch.cat([model(X[i : i + chunk].to(device)) for i in range(0, len(X), chunk)])
    model.train()
    return out.cpu()


def _snapshot(cfg: Config, model, data: dict, step: int, final: bool) -> Snapshot:
    out = outputs(model, data["X_test"], next(model.parameters()).device)
    found = detector.detect(out, LOW, cfg.nms_iou)
    scores = detector.evaluate(found, data["B_test"], data["L_test"], cfg.score_threshold)
    metrics = {k: v for k, v in scores.items() if k != "curve"}
    shown = out[SHOWN : SHOWN + 1]
    before = detector.detect(shown, cfg.score_threshold, None)[0]
    after = detector.detect(shown, cfg.score_threshold, cfg.nms_iou)[0]
    view = {
        "curve": _thin(scores["curve"]),
        "image": to_numpy(data["X_test"][SHOWN, 0]),
        "truth": data["B_test"][SHOWN].tolist(),
        "heat": to_numpy(torch.sigmoid(shown[0, ..., 0])),
        "before_nms": _listed(before),
        "after_nms": _listed(after),
    }
    if final:
        without = detector.evaluate(
            detector.detect(out, LOW, None), data["B_test"], data["L_test"], cfg.score_threshold
        )
        metrics["precision without NMS"] = without["precision"]
        metrics["recall without NMS"] = without["recall"]
        kept = [{k: v[d["scores"] >= cfg.score_threshold] for k, v in d.items()} for d in found]
        metrics["recall, touching"], metrics["recall, alone"] = recall_by_touch(kept, data)
    return Snapshot(step, cfg.steps, metrics, view=view)


def recall_by_touch(found: list[dict], data: dict) -> tuple[float, float]:
    """Recall over the held-out objects that touch another, and over those that do not."""
    hit = {True: [0, 0], False: [0, 0]}
    for det, bx, lb, touch in zip(found, data["B_test"], data["L_test"], data["touch"]):
        claimed = {obj for obj, _ in detector.claims(det, bx, lb) if obj >= 0}
        for k, t in enumerate(touch.tolist()):
            hit[t][0] += k in claimed
            hit[t][1] += 1
    return tuple(h / n if n else math.nan for h, n in (hit[True], hit[False]))


def _listed(det: dict) -> list[list[float]]:
    """[x0, y0, x1, y1, score, label, cell] per detection."""
    return [
        [*b, s, lb, c]
        for b, s, lb, c in zip(
            det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), det["cells"].tolist()
        )
    ]


def _thin(curve: dict, points: int = 120) -> dict:
    n = len(curve["recall"])
    keep = sorted({round(i * (n - 1) / max(points - 1, 1)) for i in range(min(n, points))}) if n else []
    return {k: [v[i] for i in keep] for k, v in curve.items()}


# ---------------------------------------------------------------- after training


@torch.no_grad()
def found_in(model, image: torch.Tensor, cfg: Config) -> dict:
    """One scene's detections above the threshold, before and after NMS, as the views draw them."""
    out = model.eval()(image)
    return {
        "image": to_numpy(image[0, 0]),
        "before_nms": _listed(detector.detect(out, cfg.score_threshold, None)[0]),
        "after_nms": _listed(detector.detect(out, cfg.score_threshold, cfg.nms_iou)[0]),
    }


def explain(model, image: torch.Tensor, cell: int, label: int) -> dict:
    """Integrated Gradients of one cell's class logit to the image's pixels, from a flat grey
    image: which pixels made that detection's class."""
    grid = model.grid
    row, col = divmod(cell, grid)
    with evaluating(model):
        ig = IntegratedGradients(lambda x: model(x)[:, row, col, 1 : 1 + len(CLASSES)])
        baseline = torch.full_like(image, float(image.mean()))
        attr, delta = ig.attribute(
            image, baselines=baseline, target=label, n_steps=64, return_convergence_delta=True
        )
    return {"map": to_numpy(attr[0, 0]), "delta": float(delta.abs().max()), "row": row, "col": col}


# ---------------------------------------------------------------- questions


def _last(view, variant: str, name: str) -> float:
    return view.last(f"{VARIANTS[variant]}: {name}", math.nan)


def _without_nms(view) -> tuple[str, str]:
    first = next(v for v in VARIANTS if not math.isnan(_last(view, v, "precision without NMS")))
    with_nms, without = _last(view, first, "precision"), _last(view, first, "precision without NMS")
    answer = (
        "it falls"
        if without < with_nms - 0.05
        else "it rises"
        if without > with_nms + 0.05
        else "it stays the same"
    )
    recall = _last(view, first, "recall"), _last(view, first, "recall without NMS")
    return answer, (
        f"{VARIANTS[first]}: precision {with_nms:.0%} with NMS, {without:.0%} without; "
        f"recall {recall[0]:.0%} and {recall[1]:.0%}."
    )


def _which_fits_boxes(view) -> tuple[str, str]:
    giou, l1 = _last(view, "giou", "box IoU"), _last(view, "l1", "box IoU")
    answer = "GIoU" if giou > l1 + 0.08 else "L1" if l1 > giou + 0.08 else "about the same"
    return answer, f"Mean IoU of the true detections with their objects: GIoU {giou:.2f}, L1 {l1:.2f}."


def _touching_on_a_coarse_grid(view) -> tuple[str, str]:
    fine, coarse = _last(view, "giou", "recall, touching"), _last(view, "coarse", "recall, touching")
    answer = (
        "the 8×8 grid" if fine > coarse + 0.1 else "the 4×4 grid" if coarse > fine + 0.1 else "about as many"
    )
    alone = _last(view, "giou", "recall, alone"), _last(view, "coarse", "recall, alone")
    return answer, (
        f"Objects touching another found: {fine:.0%} on 8×8, {coarse:.0%} on 4×4 (objects alone: "
        f"{alone[0]:.0%} and {alone[1]:.0%})."
    )


QUESTIONS = [
    Question(
        "Turn non-maximum suppression off: at the same score threshold, what happens to precision?",
        ("it falls", "it stays the same", "it rises"),
        {"variants": ("giou", "l1")},
        _without_nms,
        "The cells around an object's centre learn to see it too, so each object gets several "
        "boxes. One of them claims the object; the others count as false positives. NMS keeps "
        "the best-scored box of each overlapping group. Recall hardly changes: it was never the "
        "duplicates that found the objects.",
    ),
    Question(
        "Trained on generalized IoU, or on the L1 distance of the corners: which detector's boxes "
        "fit the objects better?",
        ("GIoU", "L1", "about the same"),
        {"variants": ("giou", "l1")},
        _which_fits_boxes,
        "GIoU measures the overlap itself, the same way for a small box and a large one, and "
        "still has a gradient when boxes do not overlap. L1 counts pixels, so it pays little for "
        "a small box that is half off. With objects of similar sizes that start near their "
        "boxes, as here, the two end up close; GIoU pays off when sizes vary widely.",
    ),
    Question(
        "Half the objects touch another. Which grid finds more of the touching objects: 8×8 cells "
        "of 8 pixels, or 4×4 cells of 16?",
        ("the 8×8 grid", "the 4×4 grid", "about as many"),
        {"variants": ("giou", "coarse"), "touching": 0.5},
        _touching_on_a_coarse_grid,
        "Each cell can name one object. On a 4×4 grid, two touching objects often have their "
        "centres in the same 16-pixel cell, and one of them cannot be found at all, however well "
        "the net learns.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
