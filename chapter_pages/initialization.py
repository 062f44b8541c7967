"""Chapter 4 — Initialization, activations & depth. UI only: the lab is labs/initialization.py."""

import streamlit as st

from components import controls, curves, layers, live, page
from labs import initialization as lab
from labs.core import mlp

KEY = "initialization"
cfg = page.chapter(KEY, lab)


def use_preset(settings: dict) -> None:
    for name, value in settings.items():
        controls.set_control(lab.Config, KEY, name, value)


st.caption("Presets set the activation and initialization; press Train after picking one.")
for i, (col, (name, settings)) in enumerate(zip(st.columns(3) * 2, lab.PRESETS.items())):
    col.button(name, key=f"{KEY}-preset-{i}", on_click=use_preset, args=(settings,), width="stretch")


def draw(view):
    if view is None or not view.history:
        return
    last = view.history[-1]
    cols = st.columns(4)
    cols[0].metric("test accuracy", f"{last['test_acc']:.1%}")
    cols[1].metric("training loss", f"{last['train_loss']:.3f}")
    cols[2].metric("first ÷ last layer gradient", f"{last['first/last gradient']:.1e}")
    shares = view.view.get("distinct_units", [])
    if shares:
        cols[3].metric(
            "distinct units (fewest in a layer)", f"{min(shares) * view.cfg.width:.0f} of {view.cfg.width}"
        )
    left, right = st.columns(2)
    with left:
        curves.show_curves(view.history, ["train_loss", "test_loss"], f"{KEY}-loss", title="loss")
    with right:
        curves.show_curves(view.history, ["test_acc"], f"{KEY}-acc", title="test accuracy")
    if not view.layer_history:
        return
    st.subheader("Inside the layers")
    st.plotly_chart(layers.layer_health_figure(view.layers, "grad_rms"), key=f"{KEY}-health")
    st.plotly_chart(layers.gradient_heatmap_figure(view.layer_history), key=f"{KEY}-heat")
    band = 90 if len(view.layers) <= 8 else 36
    st.plotly_chart(
        layers.activation_histograms_figure(view.layer_history, mlp.HIST_RANGE[view.cfg.activation], band),
        key=f"{KEY}-hist",
    )
    page.downloads(view, KEY)


live.live(KEY, draw)
page.questions(lab.QUESTIONS, KEY, lab.EXPERIMENT)
page.show_code(mlp.train_digits, mlp.Block, mlp.initialize)
