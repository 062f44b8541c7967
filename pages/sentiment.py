"""Chapter 12b — Text classification. UI only: the reviews are labs/reviews.py, the models and
loop labs/sentiment.py, what they show while they train figures/views/sentiment.py."""

import streamlit as st

from components import page
from figures.views import sentiment as views
from labs import reviews as grammar
from labs import sentiment as lab

KEY = "sentiment"
cfg = page.chapter(KEY, lab, views.VIEWS)


def _typed_review(view) -> None:
    """A review the learner types, read by every trained model, with each word's push."""
    models = page.memo(("models", view.id), lambda: lab.load(view.cfg, view.state_dict))
    st.subheader("Your review, read by both models")
    typed = st.text_input("Review", grammar.SHOWN_DEFAULT, max_chars=300, key=f"{KEY}-review")
    try:
        text, notice = grammar.check_review(typed)
    except grammar.ReviewError as err:
        st.error(str(err))
        return
    if notice:
        st.info(notice)
    explained = page.memo(
        ("lig", view.id, text), lambda: {n: lab.classify_and_explain(m, text) for n, m in models.items()}
    )
    columns = st.columns(len(explained))
    for column, (name, e) in zip(columns, explained.items()):
        verdict = "positive" if e["probability"] > 0.5 else "negative"
        column.metric(f"{name}: P(positive)", f"{e['probability']:.0%}", verdict, delta_color="off")
    st.plotly_chart(views.pushes_figure(explained), key=f"{KEY}-pushes", theme=None)
    st.caption(
        "LayerIntegratedGradients on the embedding: how far each word moved the model's logit, "
        "from a review with no words at all. The pushes add up to the logit's change (convergence "
        "delta: " + ", ".join(f"{n} {e['delta']:.1e}" for n, e in explained.items()) + "). The bag of "
        "words gives every word the same push in every review; in the LSTM, “not” pushes toward "
        "positive before a bad word and toward negative before a good one."
    )


page.results(KEY, lab, views.VIEWS, after=_typed_review)
page.show_code(lab.train_one, lab.BagOfWords, lab.Reader, lab.classify_and_explain)
