"""Chapter 6 — Overfitting & regularization. UI only: the lab is labs/regularization.py."""

import streamlit as st

from components import compare, images, layers, live, page
from labs import regularization as lab
from labs.core import compare as core_compare

KEY = "regularization"
cfg = page.chapter(KEY, lab)


def draw(view):
    variants = compare.variants(view)
    if not variants or not view.history:
        return
    names = list(variants)
    cols = st.columns(4)
    for col, name in zip(cols[::2], names):
        acc = lab.last(view, name, "val_acc")
        gap = lab.last(view, name, "gap")
        col.metric(f"{name}: validation accuracy", f"{acc:.1%}" if acc is not None else "–")
    for col, name in zip(cols[1::2], names):
        gap = lab.last(view, name, "gap")
        col.metric(f"{name}: loss gap", f"{gap:.2f}" if gap is not None else "–")
    st.plotly_chart(
        compare.compare_curves_figure(
            view.history,
            names,
            ["train_acc", "val_acc"],
            "accuracy: training (solid) vs validation (dashed)",
            x_title="epoch",
        ),
        key=f"{KEY}-acc",
    )
    columns = st.columns(len(names))
    for i, (col, (name, info)) in enumerate(zip(columns, variants.items())):
        marks = {"best epoch": info["best_epoch"]} if info.get("best_epoch") else {}
        if info.get("stopped_epoch"):
            marks["early stop"] = info["stopped_epoch"]
        col.plotly_chart(
            compare.gap_figure(view.history, name, "train_loss", "val_loss", marks, i), key=f"{KEY}-gap-{i}"
        )
        col.caption(compare.status_line(name, info))
    left, right = st.columns(2)
    hists = {n: info["weights"] for n, info in variants.items() if "weights" in info}
    if hists:
        left.plotly_chart(
            layers.weight_histograms_figure(hists, lab.WEIGHT_RANGE, compare.PALETTE), key=f"{KEY}-weights"
        )
    samples = variants.get(lab.REGULARIZED, {}).get("samples")  # the images the remedies change
    if samples is not None:
        augmented = len(samples) > 6
        right.plotly_chart(
            images.mosaic_figure(
                samples,
                cols=4 if augmented else 6,
                height=330,
                title="each row: a training image, then three augmented copies"
                if augmented
                else "training images (tick an augmentation to see it)",
            ),
            key=f"{KEY}-samples",
        )
    page.downloads(view, KEY)


live.live(KEY, draw)
page.questions(lab.QUESTIONS, KEY, lab.EXPERIMENT)
page.show_code(lab.train_one, lab.augment, core_compare.side_by_side)
