"""Chapter 22 — Data ethics: bias a model learns, and what fixing it costs. UI only: the
experiments are labs/ethics.py (its data labs/deliveries.py, its measures
labs/group_measures.py) and labs/feedback_loop.py, what they show figures/views/ethics.py."""

import streamlit as st

import chapters
from chapters import run_key
from components import controls, live, page
from figures.views import ethics as views
from labs import deliveries, feedback_loop, group_measures
from labs import ethics as lab

PAGE = "ethics"
BIAS, FEEDBACK = run_key(PAGE, "bias"), run_key(PAGE, "feedback")
page.intro(PAGE, chapters.by_slug(PAGE).label)
bias_tab, feedback_tab = st.tabs(["A gap in the record, and three remedies", "A recommender's feedback loop"])

with bias_tab:
    b_cfg = controls.config_controls(lab.Config, BIAS, st.container())
    controls.link_notices(BIAS)
    live.run_buttons(BIAS, lab.EXPERIMENT, b_cfg, views.BIAS)
    page.downloads(live.show(BIAS, views.BIAS), BIAS)

with feedback_tab:
    st.markdown(
        "Chapter 11's recommender, retrained each round on the clicks its own picks got: an "
        "item never shown counts as an item not wanted. Beside it, the same loop giving a share "
        "of each user's slots to items drawn at random."
    )
    f_cfg = controls.config_controls(feedback_loop.FeedbackConfig, FEEDBACK, st.container())
    controls.link_notices(FEEDBACK)
    live.run_buttons(FEEDBACK, lab.FEEDBACK, f_cfg, views.FEEDBACK)
    page.downloads(live.show(FEEDBACK, views.FEEDBACK), FEEDBACK)

controls.share_link((b_cfg, BIAS), (f_cfg, FEEDBACK))
page.questions(lab.QUESTIONS, BIAS, lab.EXPERIMENT, views.BIAS)
page.show_code(
    deliveries.deliveries,
    lab.train_one,
    deliveries.reweighing,
    group_measures.b_threshold,
    feedback_loop.train_loop,
)
