"""Deep Learning Lab: the entry point. It builds the navigation from the chapter registry."""

import threading

import streamlit as st
import torch

from chapters import by_part
from labs.core import data
from labs.core.device import configure_threads, warm_up
from labs.core.runner import SLOTS
from labs.core.workers import POOL, executor

st.set_page_config(page_title="Deep Learning Lab", page_icon="🧪", layout="wide")


@st.cache_resource(show_spinner=False)
def prepare_server() -> bool:
    """Once per server process: start the training workers (each imports torch: seconds),
    warm kernels and parse the shipped datasets in the background, so no learner's first
    Train click pays for them."""
    configure_threads()

    def warm():
        data.mnist_subset()  # writes the .npz cache that workers then read in milliseconds
        if executor() == "process":  # one worker per run that may train at once
            gpu_runs = SLOTS["cuda"].limit if torch.cuda.is_available() else 0
            POOL.prestart(SLOTS["cpu"].limit + gpu_runs)
        warm_up()

    threading.Thread(target=warm, daemon=True, name="warm-up").start()
    return True


prepare_server()
home = st.Page("chapter_pages/home.py", title="Home", icon="🏠", default=True)
pages = {"Start": [home]} | {
    part: [st.Page(c.page, title=c.label, icon=c.icon, url_path=c.slug) for c in chapters]
    for part, chapters in by_part().items()
}
st.navigation(pages).run()
