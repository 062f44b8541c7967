"""Chapter 13 — Language models. UI only: the models and loop are labs/language.py, the texts
and their checks labs/text.py."""

import dataclasses
import functools

import streamlit as st

from components import controls, live, page
from figures import sequences
from figures.views import language as views
from labs import language as lab
from labs import text

KEY = "language"
# Past this the browser itself refuses a file, with only a mark on its chip; below it the lab
# reads the file and says why it will not train on it (2 MB is the real limit).
UPLOAD_CAP_MB = 50
page.intro(KEY, "13. Language models")
cfg = controls.config_controls(lab.Config, KEY)
controls.share_link((cfg, KEY))
controls.link_notices(KEY)


def read_upload():
    """The learner's .txt, checked once per file and encoding; None (with a message) if refused."""
    box = st.container(border=True)
    file = box.file_uploader(  # any extension: the text itself is checked, with reasons
        "Your text: any plain-text file (.txt, .md, .py, .csv …), up to 2 MB",
        key=f"{KEY}-upload",
        max_upload_size=UPLOAD_CAP_MB,
    )
    encoding = box.selectbox("Its encoding", text.ENCODINGS, key=f"{KEY}-encoding")
    if file is None:
        box.info("Upload a plain-text file to train on it.")
        return None
    try:
        corpus = page.memo(("upload", file.file_id, encoding), lambda: _checked(file, encoding))
    except text.TextError as err:
        box.error(str(err))
        return None
    box.caption(f"{len(corpus.text):,} characters, {len(corpus.vocab)} distinct: ready to train.")
    return corpus


def _checked(file, encoding):
    return text.read_upload(file.getvalue(), encoding, file.name)


upload = read_upload() if cfg.corpus == "upload" else None
experiment = lab.EXPERIMENT
if upload is not None:  # the checked text travels with the run, never through a shared cache
    experiment = dataclasses.replace(experiment, train=functools.partial(lab.train, upload=upload))
live.run_buttons(KEY, experiment, cfg, views.VIEWS)


def _after_training(view):
    c, vocab = view.cfg, view.view["vocab"]
    st.subheader("Ask the trained model")
    model = page.memo(("model", view.id), lambda: lab.load_model(c, vocab, view.state_dict))
    left, right = st.columns([2, 1])
    start = "def __init__(self" if c.corpus == "python" else view.view["sample"]["prompt"]
    typed = left.text_input("Prompt", start, max_chars=500, key=f"{KEY}-prompt")
    temperature = right.slider("Temperature", 0.1, 2.0, float(c.temperature), 0.1, key=f"{KEY}-temp")
    top_k = right.slider("Top-k (0 = all)", 0, 50, int(c.top_k), key=f"{KEY}-topk")
    try:
        prompt, notice = text.check_prompt(typed, vocab, c.context)
    except text.TextError as err:
        left.error(str(err))
        return
    if notice:
        left.caption(notice)
    probs = page.memo(("probs", view.id, prompt), lambda: lab.next_char_probs(model, vocab, prompt)).numpy()
    left.plotly_chart(sequences.next_char_figure(vocab, probs), key=f"{KEY}-fig-next", theme=None)
    corpus = text.Corpus("", "", vocab)
    seed = right.number_input("Sample seed", 0, 9999, 0, key=f"{KEY}-sample-seed")
    written = page.memo(
        ("write", view.id, prompt, temperature, top_k, seed),
        lambda: lab.generate(model, corpus, prompt, c.context, 300, temperature, top_k, seed),
    )
    right.code(prompt + "│" + written, language=None, wrap_lines=True)
    target = int(probs.argmax())
    explained = page.memo(("lig", view.id, prompt, target), lambda: lab.explain(model, vocab, prompt, target))
    labels = [sequences.visible(ch) for ch in prompt]
    rows = {f"→ {sequences.visible(vocab[target])}": explained["by_char"]}
    st.plotly_chart(sequences.attribution_over_time_figure(rows, labels), key=f"{KEY}-fig-lig", theme=None)
    st.caption(
        f"LayerIntegratedGradients on the embedding: how much each character of the prompt pushed the "
        f"likeliest next character, **{sequences.visible(vocab[target])}** ({probs[target]:.0%}), "
        f"against a prompt of spaces. Blue for, red against. Convergence delta {explained['delta']:.1e}."
    )


page.results(KEY, lab, views.VIEWS, after=_after_training)
page.show_code(lab.train, lab.CharLSTM, lab.Block, lab.generate)
