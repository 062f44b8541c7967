"""Chapter 2 — Neural network playground. UI only: the model and loop are labs/playground.py."""

import numpy as np
import streamlit as st

from components import curves, images, layers, live, page
from labs import playground as lab

KEY = "playground"
cfg = page.chapter(KEY, lab)


def draw(view):
    if view is None or not view.history:
        return
    last = view.history[-1]
    cols = st.columns(4)
    for col, (name, label) in zip(
        cols,
        [
            ("test_acc", "test accuracy"),
            ("train_acc", "train accuracy"),
            ("test_loss", "test loss"),
            ("train_loss", "train loss"),
        ],
    ):
        col.metric(label, f"{last[name]:.1%}" if "acc" in name else f"{last[name]:.3f}")
    v = view.view
    left, right = st.columns([3, 2])
    picked = _picked_point(v)
    left.plotly_chart(
        images.decision_boundary_figure(
            v["boundary"], lab.EXTENT, v["X_train"], v["y_train"], v["X_test"], v["y_test"], picked
        ),
        key=f"{KEY}-boundary",
        on_select="rerun",
        selection_mode="points",
    )
    with right:
        curves.show_curves(view.history, ["train_loss", "test_loss"], f"{KEY}-loss", title="loss")
        curves.show_curves(view.history, ["train_acc", "test_acc"], f"{KEY}-acc", title="accuracy")
    st.subheader("Every hidden unit over the plane")
    _neurons(v["neurons"])
    st.subheader("Inside the layers")
    layers.show_layers(view.layer_history, lab.HIST_RANGE[view.cfg.activation], KEY)
    if view.state_dict is not None:
        _explain(view, picked)
    page.downloads(view, KEY)


def _picked_point(v):
    """The point clicked on the boundary chart, else the test point picked by number."""
    selection = st.session_state.get(f"{KEY}-boundary")
    points = selection.selection.points if selection else []
    if points:
        return float(points[0]["x"]), float(points[0]["y"])
    i = min(st.session_state.get(f"{KEY}-point", 0), len(v["X_test"]) - 1)
    return float(v["X_test"][i, 0]), float(v["X_test"][i, 1])


def _neurons(maps):
    if not maps:
        st.caption("A linear model has no hidden units: its boundary is one straight line.")
        return
    width = max(m.shape[0] for m in maps)
    tiles = np.full((len(maps) * width, *maps[0].shape[1:]), np.nan, dtype=np.float32)
    for i, layer in enumerate(maps):  # one row per layer, units left to right
        tiles[i * width : i * width + len(layer)] = layer
    st.plotly_chart(
        images.mosaic_figure(tiles[:, ::-1], cols=width, height=90 * len(maps) + 40), key=f"{KEY}-neurons"
    )
    st.caption("Rows are layers (first on top); blue = high output, red = low, each unit scaled to itself.")


def _explain(view, point):
    st.subheader("Why this prediction? Integrated Gradients")
    st.caption("Click a point on the boundary chart to explain it (the gold ×), or pick a test point:")
    st.number_input("Test point #", 0, len(view.view["X_test"]) - 1, key=f"{KEY}-point")
    model = page.memo(("model", view.id), lambda: lab.load_model(view.cfg, view.state_dict))
    e = page.memo(("ig", view.id, point), lambda: lab.explain_point(model, view.cfg, point))
    left, right = st.columns([2, 1])
    left.plotly_chart(
        images.feature_bar_figure(
            e["features"], e["attributions"], "attribution of the logit to each input feature"
        ),
        key=f"{KEY}-ig",
    )
    right.metric("P(blue) at this point", f"{e['probability']:.1%}")
    right.write(
        f"Logit {e['logit']:.3f} − logit at the centre {e['baseline_logit']:.3f} = "
        f"{e['logit'] - e['baseline_logit']:.3f}; attributions sum to "
        f"{e['attributions'].sum():.3f} (convergence delta {e['delta']:.1e})."
    )


live.live(KEY, draw)
page.questions(lab.QUESTIONS, KEY, lab.EXPERIMENT)
page.show_code(lab.train, lab.PlaygroundNet)
