"""Chapter 6 live: training against validation for both nets, each gap shaded, the weights'
histograms and what augmentation does to the images."""

from __future__ import annotations

from components import compare, images, layers
from components.views import NUMBERS, Views
from labs import regularization as lab

LAYOUT = (("accuracy",), ("gap: *",), ("weights", "samples"))


def draw(run) -> dict:
    variants = compare.variants(run)
    names = list(variants)
    if not variants or not run.history:
        return {}
    numbers = []
    for name in names:
        acc, gap = lab.last(run, name, "val_acc"), lab.last(run, name, "gap")
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
        parts["weights"] = layers.weight_histograms_figure(hists, lab.WEIGHT_RANGE, compare.PALETTE)
    samples = variants.get(lab.REGULARIZED, {}).get("samples")  # the images the remedies change
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
