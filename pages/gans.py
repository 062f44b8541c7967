"""Chapter 16 — GANs. UI only: the experiments are labs/gans.py, what they show while they
train figures/views/gans.py."""

import streamlit as st

import chapters
from chapters import run_key
from components import controls, live, page
from figures.views import gans as views
from labs import gans as lab

PAGE = "gans"
TOY, DIGITS = run_key(PAGE, "toy"), run_key(PAGE, "digits")
page.intro(PAGE, chapters.by_slug(PAGE).label)
toy_tab, digits_tab = st.tabs(["A GAN on the plane", "DCGAN on the digits"])

with toy_tab:
    t_cfg = controls.config_controls(lab.Config, TOY, st.container())
    controls.link_notices(TOY)
    live.run_buttons(TOY, lab.EXPERIMENT, t_cfg, views.TOY)
    page.downloads(live.show(TOY, views.TOY), TOY)

with digits_tab:
    d_cfg = controls.config_controls(lab.DigitsConfig, DIGITS, st.container())
    controls.link_notices(DIGITS)
    live.run_buttons(DIGITS, lab.DIGITS, d_cfg, views.DIGITS)
    page.downloads(live.show(DIGITS, views.DIGITS), DIGITS)

controls.share_link((t_cfg, TOY), (d_cfg, DIGITS))
page.questions(lab.QUESTIONS, TOY, lab.EXPERIMENT, views.TOY)
page.show_code(lab.train, lab.d_loss, lab.g_loss, lab.gradient_penalty)
