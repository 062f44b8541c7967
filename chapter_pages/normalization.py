"""Chapter 5 — Normalization & residual connections. UI only: the lab is labs/normalization.py."""

import streamlit as st

from components import compare, layers, live, page
from labs import normalization as lab
from labs.core import compare as core_compare
from labs.core import mlp

KEY = "normalization"
cfg = page.chapter(KEY, lab)


def draw(view):
    names = list(compare.variants(view))
    if not names or not view.history:
        return
    left, right = st.columns(2)
    left.plotly_chart(
        compare.compare_curves_figure(view.history, names, ["train_loss"], "training loss", log_y=True),
        key=f"{KEY}-loss",
    )
    right.plotly_chart(
        compare.compare_curves_figure(view.history, names, ["test_acc"], "test accuracy"), key=f"{KEY}-acc"
    )
    st.subheader("Inside the layers")
    histories = {n: core_compare.layer_history_of(view.layer_history, n) for n in names}
    latest = {n: h[-1][1] for n, h in histories.items() if h}
    left, right = st.columns(2)
    left.plotly_chart(
        compare.by_layer_figure(latest, "grad_rms", "gradient per weight (RMS), layer by layer, now"),
        key=f"{KEY}-grads",
    )
    right.plotly_chart(
        compare.by_layer_figure(latest, "act_std", "spread (std) of each layer's output, now"),
        key=f"{KEY}-acts",
    )
    st.caption("Each variant's gradient per layer over training, all on one colour scale:")
    z_range = layers.log_range(list(histories.values()))
    compare.show_variants(view, lambda name, i, info, history: _heatmap(i, history, z_range))
    page.downloads(view, KEY)


def _heatmap(i, history, z_range):
    if history:
        st.plotly_chart(
            layers.gradient_heatmap_figure(history, height=300, z_range=z_range), key=f"{KEY}-heat-{i}"
        )


live.live(KEY, draw)
page.questions(lab.QUESTIONS, KEY, lab.EXPERIMENT)
page.show_code(lab.train, core_compare.side_by_side, mlp.Block, mlp.train_digits)
