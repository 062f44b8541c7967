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
    st.subheader("Inside each variant")
    st.caption(
        "Gradient per weight (RMS) for every layer over training, then the activations each layer passes on."
    )
    compare.show_variants(view, _inside)
    page.downloads(view, KEY)


def _inside(name, i, info, history):
    if not history:
        st.caption("No statistics yet.")
        return
    st.plotly_chart(layers.gradient_heatmap_figure(history, height=300), key=f"{KEY}-heat-{i}")
    st.plotly_chart(
        layers.activation_histograms_figure(history, mlp.HIST_RANGE["relu"], 24), key=f"{KEY}-hist-{i}"
    )


live.live(KEY, draw)
page.questions(lab.QUESTIONS, KEY, lab.train, lab.PREFERS_GPU)
page.show_code(lab.train, core_compare.side_by_side, mlp.Block, mlp.train_digits)
