"""Chapter 6 live: training against validation for both nets, each gap shaded, the weights'
histograms and what augmentation does to the images."""

from __future__ import annotations

from figures import compare, images, layers
from figures.variants import metric
from figures.views import NUMBERS, Views

LAYOUT = (("accuracy",), ("gap: *",), ("weights", "samples"))


def draw(run) -> dict:
    variants = compare.variants(run)
    names = list(variants)
    if not variants or not run.history:
        return {}
    numbers = []
    for name in names:
        acc, gap = run.last(metric(name, "val_acc")), run.last(metric(name, "gap"))
        numbers.append([f"{name}: validation accuracy", "–" if acc is None else f"{acc:.1%}"])
        numbers.append([f"{name}: loss gap", "–" if gap is None else f"{gap:.2f}"])
    parts = {
        NUMBERS: numbers,
        "accuracy": compare.compare_curves_figure(
            run,
            names,
            ["train_acc", "val_acc"],
            "accuracy: training (solid) vs validation (dashed)",
            x_title="epoch",
        ),
    }
    for i, (name, info) in enumerate(variants.items()):
        marks = {"best epoch": info["best_epoch"]} if info.get("best_epoch") else {}
        if info.get("stopped_epoch"):
            marks["early stop"] = info["stopped_epoch"]
        parts[f"gap: {name}"] = compare.gap_figure(run, name, "train_loss", "val_loss", marks, i)
    hists = {n: info["weights"] for n, info in variants.items() if "weights" in info}
    if hists:
        weight_range = next(info["weight_range"] for info in variants.values() if "weights" in info)
        parts["weights"] = layers.weight_histograms_figure(hists, weight_range, compare.PALETTE)
    # the regularized variant comes last: its images are the ones the remedies change
    samples = next((i["samples"] for i in reversed(variants.values()) if "samples" in i), None)
    if samples is not None:
        augmented = len(samples) > 6
        title = (
            "each row: a training image, then three augmented copies"
            if augmented
            else "training images (tick an augmentation to see it)"
        )
        parts["samples"] = images.mosaic_figure(samples, cols=4 if augmented else 6, height=330, title=title)
    return parts


VIEWS = Views(draw, LAYOUT)
