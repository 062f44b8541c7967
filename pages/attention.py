"""Chapter 14 — Attention & Transformers. UI only: the tasks and loop are labs/attention.py, the
model labs/transformer.py."""

import streamlit as st

from components import page
from figures import attention as figures
from figures.views import attention as views
from labs import attention as lab
from labs import transformer

KEY = "attention"
cfg = page.chapter(KEY, lab, views.VIEWS)


def pick_kind(view):
    """Once the run has ended: any of the three kinds of attention map."""
    if view.state_dict is None:
        return {}
    st.subheader("Where each position looks")
    kind = st.radio("Attention", views.KINDS, horizontal=True, key=f"{KEY}-kind")
    return {"maps": views.maps(view, kind)}


def _after_training(view):
    c = view.cfg
    if c.positional == "none":
        st.caption("No positional encoding: every position adds the same zeros.")
    st.subheader("Your own example, explained")
    model = page.memo(("model", view.id), lambda: lab.load_model(c, view.state_dict))
    default = "35201+79412" if c.task == "add" else "31415926"[: c.max_length]
    typed = st.text_input("Input", default, max_chars=60, key=f"{KEY}-typed")
    try:
        src = lab.parse_input(c.task, typed, c.max_length)
    except ValueError as err:
        st.error(str(err))
        return
    written = page.memo(("answer", view.id, typed), lambda: lab.answer(model, c, src))
    inputs, outputs = lab.token_text(src[0].tolist()), lab.token_text(written[0].tolist())
    expected = lab.expected_output(c.task, src)
    verdict = "right" if outputs == expected else f"wrong: it should be {''.join(expected)}"
    st.markdown(f"The model writes **{''.join(outputs)}** ({verdict}).")
    explained = page.memo(("explain", view.id, typed), lambda: lab.explain(model, src, written))
    st.plotly_chart(
        figures.attribution_vs_attention_figure(
            explained["attribution"], explained["cross_attention"], inputs, outputs
        ),
        key=f"{KEY}-fig-ig",
        theme=None,
    )
    st.caption(
        "Attention says where the last layer looked; Integrated Gradients says how much the "
        "written token's score would change with each input token (blue raises it, red lowers it; "
        f"largest convergence delta {explained['delta']:.1e}). They need not agree: see "
        "*How it works*."
    )


page.results(KEY, lab, views.VIEWS, after=_after_training, replace=pick_kind)
page.show_code(lab.train, transformer.Attention, transformer.TinyTransformer, lab.make_batch)
