"""Chapter 11 — Collaborative filtering. UI only: the models and loop are labs/collaborative.py,
the ratings labs/ratings.py, what they show while they train figures/views/collaborative.py."""

import pandas as pd
import streamlit as st

from components import page
from figures.views import collaborative as views
from labs import collaborative as lab
from labs.ratings import split

KEY = "collaborative"
cfg = page.chapter(KEY, lab, views.VIEWS)


def _recommend(view) -> None:
    """One user's best unseen items by the trained dot product, each score split in two."""
    state = view.state_dict.get("dot product")
    if not state:
        return
    c = view.cfg
    ratings, _ = lab.load_ratings(c)
    model = page.memo(("model", view.id), lambda: lab.load(c, ratings, state))
    train_rows, _ = split(len(ratings), c.seed)
    st.subheader("Recommendations for one user")
    left, right = st.columns([1, 2])
    user = left.number_input("User", 0, ratings.n_users - 1, 0, key=f"{KEY}-user")
    picks = lab.recommend(model, ratings, int(user), train_rows)
    liked = lab.user_genres(ratings, int(user), train_rows)
    left.dataframe(
        pd.DataFrame({"genre": list(liked), "their mean rating": [round(v, 2) for v in liked.values()]}),
        hide_index=True,
    )
    left.caption(
        "What this user gave each genre in the training ratings. The picks on the right are "
        "films they have not rated: the bias part is the same for every user (a well-liked "
        "film), the taste part is theirs alone."
    )
    right.plotly_chart(views.recommendations_figure(picks), key=f"{KEY}-picks", theme=None)


page.results(KEY, lab, views.VIEWS, after=_recommend)
page.show_code(lab.train_one, lab.DotProduct, lab.penalty, lab.svd_predictor)
