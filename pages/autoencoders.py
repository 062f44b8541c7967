"""Chapter 15 — Autoencoders & VAEs. UI only: the models and loop are labs/autoencoders.py."""

import streamlit as st

from components import page
from figures.views import autoencoders as views
from labs import autoencoders as lab

KEY = "autoencoders"
cfg = page.chapter(KEY, lab, views.VIEWS)


def _explore(view) -> None:
    """Decode a chosen point of the latent plane, a grid over it, and a walk between two digits."""
    ds = page.memo(("digits", view.cfg.seed), lambda: lab.digits(view.cfg.seed))
    models = page.memo(("models", view.id), lambda: lab.load(view.cfg, view.state_dict))
    st.subheader("The decoder, explored")
    name = st.radio("Model", list(models), horizontal=True, key=f"{KEY}-explore-model")
    model = models[name]
    codes = page.memo(("codes", view.id, name), lambda: lab.codes_of(model, ds.X_test[: lab.MAPPED]))
    lo, hi = (t.numpy() for t in lab.latent_box(codes))
    left, right = st.columns([1, 2])
    z = codes.median(0).values.numpy().copy()
    for i in range(2):
        z[i] = left.slider(f"z{'₁₂'[i]}", float(lo[i]), float(hi[i]), float(z[i]), key=f"{KEY}-z{i}-{name}")
    left.plotly_chart(
        views.rows_figure({"decoded": lab.decode(model, z[None])}), key=f"{KEY}-decoded", theme=None
    )
    if view.cfg.latent_dim > 2:
        left.caption(f"The other {view.cfg.latent_dim - 2} dimensions stay at the test codes' median.")
    labels = ds.y_test[: lab.MAPPED].numpy()
    plane = codes.numpy()[:, :2]
    right.plotly_chart(
        views.latent_figure(plane, labels, f"{name}: where that point lies", point=z[:2]),
        key=f"{KEY}-where",
        theme=None,
    )
    grid_codes, grid = page.memo(("grid", view.id, name), lambda: lab.latent_grid(model, codes))
    st.plotly_chart(
        views.grid_figure(grid, lab.GRID, f"{name}: decoded across the plane (z₁ →, z₂ ↑)"),
        key=f"{KEY}-grid",
        theme=None,
    )
    st.caption(
        f"Share of the plane the decoder never trained on (holes): "
        f"{lab.holes(lab.decoder_inputs(model, ds.X_test[: lab.MAPPED])):.0%}. "
        "Decoded points far from every code show what the decoder makes of a hole."
    )
    a, b = st.columns(2)
    first = a.number_input("From test digit", 0, len(ds.X_test) - 1, 0, key=f"{KEY}-from")
    second = b.number_input("To test digit", 0, len(ds.X_test) - 1, 1, key=f"{KEY}-to")
    walks = {
        n: lab.interpolate(m, ds.X_test[first : first + 1], ds.X_test[second : second + 1])
        for n, m in models.items()
    }
    st.plotly_chart(
        views.rows_figure(walks, "a straight line between the two codes, decoded"),
        key=f"{KEY}-walk",
        theme=None,
    )


page.results(KEY, lab, views.VIEWS, after=_explore)
page.show_code(lab.train_one, lab.losses, lab.AutoEncoder)
