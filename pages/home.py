"""Home: what the lab is, the map of chapters, and what hardware trains the models."""

import streamlit as st

from chapters import by_part
from labs.core.device import hardware_summary
from labs.core.runner import SLOTS

st.title("🧪 Deep Learning Lab")
st.markdown(
    "Every page is a chapter of a deep-learning course, turned into a lab. Move the sliders, "
    "press **Train**, and a real PyTorch model learns while you watch: the loss falling, what "
    "each layer's units do, how the gradient flows back, and, once it has learned, which parts "
    "of the input its decisions rest on (Captum attributions of the very model you trained)."
)
st.info(
    f"**Hardware:** {hardware_summary()}. Up to {SLOTS['cpu'].limit} CPU runs "
    f"and {SLOTS['cuda'].limit} GPU runs train at once on this server; others queue.",
    icon="🖥️",
)

for part, chapters in by_part().items():
    st.subheader(part)
    for chapter in chapters:
        with st.container(border=True):
            st.page_link(chapter.page, label=f"**{chapter.label}**", icon=chapter.icon)
            st.caption(chapter.summary)

st.caption(
    "Each chapter ends with questions to predict before you run, and a "
    "“Show the code” expander with the training loop that ran."
)
