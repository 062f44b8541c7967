"""Chapter 4 — Initialization, activations & depth. UI only: the lab is labs/initialization.py."""

import streamlit as st

from components import controls, page
from figures.views import initialization as views
from labs import initialization as lab
from labs.core import mlp

KEY = "initialization"
cfg = page.chapter(KEY, lab, views.VIEWS)


def use_preset(settings: dict) -> None:
    for name, value in settings.items():
        controls.set_control(lab.Config, KEY, name, value)


st.caption("Presets set the activation and initialization; press Train after picking one.")
for i, (col, (name, settings)) in enumerate(zip(st.columns(3) * 2, lab.PRESETS.items())):
    col.button(name, key=f"{KEY}-preset-{i}", on_click=use_preset, args=(settings,), width="stretch")


page.results(KEY, lab, views.VIEWS)
page.show_code(mlp.train_digits, mlp.Block, mlp.initialize)
