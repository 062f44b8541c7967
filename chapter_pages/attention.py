"""Chapter 14 — Attention & Transformers. UI only: the tasks and loop are labs/attention.py, the
model labs/core/seq2seq.py."""

import streamlit as st

from components import attention as figures
from components import curves, live, page
from labs import attention as lab
from labs.core import seq2seq

KEY = "attention"
cfg = page.chapter(KEY, lab)
KINDS = ("decoder cross-attention", "encoder self-attention", "decoder self-attention")


def axes(kind: str, inputs: list[str], outputs: list[str]) -> tuple[list[str], list[str]]:
    """(queries, keys) labels for one kind of attention map."""
    written = ["▶"] + outputs[:-1]  # what the decoder reads: start, then the outputs so far
    return {
        "decoder cross-attention": (outputs, inputs),
        "encoder self-attention": (inputs, inputs),
        "decoder self-attention": (written, written),
    }[kind]


def draw(view):
    if view is None or not view.history:
        return
    c, last, v = view.cfg, view.history[-1], view.view
    cols = st.columns(3)
    cols[0].metric("sequences right (teacher forcing)", f"{last['sequence_acc']:.0%}")
    cols[1].metric("digits right (teacher forcing)", f"{last['token_acc']:.0%}")
    greedy = last.get("greedy_sequence_acc")
    cols[2].metric("sequences written right", "after training" if greedy is None else f"{greedy:.0%}")
    left, right = st.columns(2)
    left.plotly_chart(
        curves.curves_figure(view.history, ["train_loss"], "training loss", log_y=True), key=f"{KEY}-fig-loss"
    )
    by_length = {"teacher forcing": v["acc_by_length"]}
    if "greedy_acc_by_length" in v:
        by_length["written by the model"] = v["greedy_acc_by_length"]
    right.plotly_chart(
        figures.by_length_figure(v["lengths"], by_length, lab.trained_lengths(c)), key=f"{KEY}-fig-length"
    )
    st.subheader("Where each position looks")
    kind = st.radio("Attention", KINDS, horizontal=True, key=f"{KEY}-kind")
    example = v["example"]
    queries, keys = axes(kind, example["input"], example["output"])
    st.plotly_chart(
        figures.attention_grid_figure(
            v["attention"][kind], queries, keys, f"{kind} for {' '.join(example['input'])}"
        ),
        key=f"{KEY}-fig-maps",
    )
    st.plotly_chart(figures.positional_figure(v["positions"]), key=f"{KEY}-fig-pe")
    if c.positional == "none":
        st.caption("No positional encoding: every position adds the same zeros.")
    if view.state_dict is not None:
        _after_training(view)
    page.downloads(view, KEY)


def _after_training(view):
    c = view.cfg
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
    )
    st.caption(
        "Attention says where the last layer looked; Integrated Gradients says how much the "
        "written token's score would change with each input token (blue raises it, red lowers it; "
        f"largest convergence delta {explained['delta']:.1e}). They need not agree: see "
        "*How it works*."
    )


live.live(KEY, draw)
page.questions(lab.QUESTIONS, KEY, lab.EXPERIMENT)
page.show_code(lab.train, seq2seq.Attention, seq2seq.TinyTransformer, lab.make_batch)
