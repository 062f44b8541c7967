"""Chapter 21 — Sequence to sequence with attention. UI only: the task is labs/number_words.py,
the models labs/encoder_decoder.py, the loop labs/seq2seq.py, the explanations
labs/seq2seq_explain.py, what the run shows figures/views/seq2seq.py."""

import streamlit as st

from components import page
from figures import seq2seq as figures
from figures.views import seq2seq as views
from labs import encoder_decoder, number_words
from labs import seq2seq as lab
from labs import seq2seq_explain as explain

KEY = "seq2seq"
cfg = page.chapter(KEY, lab, views.VIEWS)


def _after_training(view):
    c = view.cfg
    st.subheader("Your own number, written and explained")
    models = page.memo(("models", view.id), lambda: lab.load_models(c, view.state_dict))
    typed = st.text_input("A number", str(c.example), max_chars=20, key=f"{KEY}-typed")
    try:
        number = number_words.parse_number(typed, c.max_digits)
    except ValueError as err:
        st.error(str(err))
        return
    st.markdown(f"**{number:,}** is *{' '.join(number_words.words_of(number))}*.")
    columns = st.columns(len(models))
    for column, (name, model) in zip(columns, models.items()):
        with column:
            _one_model(view, name, model, number, c.beam)


def _one_model(view, name: str, model, number: int, beam: int) -> None:
    written = page.memo(("write", view.id, name, number), lambda: explain.write(model, number, beam))
    st.markdown(f"**{name}**")
    for way, label in (("greedy", "greedy"), ("beam", f"beam of {beam}")):
        mark = "✓" if written[f"{way} right"] else "✗"
        st.markdown(f"{mark} {label}: *{' '.join(written[way]) or '(nothing)'}*")
    explained = page.memo(("explain", view.id, name, number), lambda: explain.explain(model, number))
    inputs, outputs = explained["inputs"], explained["outputs"]
    st.plotly_chart(
        figures.attribution_figure(
            explained["attribution"], inputs, outputs, "what each word depended on (IG)"
        ),
        key=f"{KEY}-ig-{name}",
        theme=None,
    )
    if "attention" in explained:
        st.plotly_chart(
            figures.attention_figure(
                explained["attention"], inputs, outputs, "where each word looked (attention)"
            ),
            key=f"{KEY}-att-{name}",
            theme=None,
        )
        st.caption(
            f"The most-attended digit is the one the word depended on most for "
            f"{explained['agreement']:.0%} of the words (chance: about {1 / len(inputs):.0%})."
        )
    st.caption(f"Integrated Gradients, 64 steps; largest convergence delta {explained['delta']:.1e}.")


page.results(KEY, lab, views.VIEWS, after=_after_training)
page.show_code(
    lab.train_one, encoder_decoder.Additive, encoder_decoder.Seq2Seq.step, encoder_decoder.beam_search
)
