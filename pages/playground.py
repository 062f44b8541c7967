"""Chapter 2 — Neural network playground. UI only: the model and loop are labs/playground.py,
what a run shows while it trains figures/views/playground.py."""

import streamlit as st

from components import live, page
from figures import images
from figures.views import playground as views
from labs import playground as lab
from labs import playground_explain as explain_lab

KEY = "playground"
cfg = page.chapter(KEY, lab, views.VIEWS)


def picked_point(view):
    """The point clicked on the boundary chart, else the test point picked by number."""
    selection = st.session_state.get(live.chart_key(KEY, "boundary"))
    points = selection.selection.points if selection else []
    if points:
        return float(points[0]["x"]), float(points[0]["y"])
    X_test = view.view["X_test"]
    i = min(st.session_state.get(f"{KEY}-point", 0), len(X_test) - 1)
    return float(X_test[i, 0]), float(X_test[i, 1])


def explain(view):
    st.subheader("Why this prediction? Integrated Gradients")
    st.caption("Click a point on the boundary chart to explain it (the gold ×), or pick a test point:")
    st.number_input("Test point #", 0, len(view.view["X_test"]) - 1, key=f"{KEY}-point")
    point = picked_point(view)
    model = page.memo(("model", view.id), lambda: lab.load_model(view.cfg, view.state_dict))
    e = page.memo(("ig", view.id, point), lambda: explain_lab.explain_point(model, view.cfg, point))
    left, right = st.columns([2, 1])
    title = f"attribution of the {images.CLASS_NAMES[e['class']]} logit to each input feature"
    left.plotly_chart(
        images.feature_bar_figure(e["features"], e["attributions"], title), key=f"{KEY}-ig", theme=None
    )
    right.metric(f"P({images.CLASS_NAMES[e['class']]}) at this point", f"{e['probability']:.1%}")
    right.write(
        f"Logit {e['logit']:.3f} − logit at the centre {e['baseline_logit']:.3f} = "
        f"{e['logit'] - e['baseline_logit']:.3f}; attributions sum to "
        f"{e['attributions'].sum():.3f} (convergence delta {e['delta']:.1e})."
    )


def outputs(view):
    """The point's logits, probabilities and the loss's gradient on each logit."""
    point = picked_point(view)
    label = explain_lab.label_near(view.view, point)
    model = page.memo(("model", view.id), lambda: lab.load_model(view.cfg, view.state_dict))
    o = page.memo(
        ("outputs", view.id, point), lambda: explain_lab.point_outputs(model, view.cfg, point, label)
    )
    st.subheader("Logits, probabilities, and what the loss sends back")
    st.caption(
        f"The point's label is {images.CLASS_NAMES[label]}. The gradient of its loss with respect to "
        "each logit is what training pushes back into the net: with cross-entropy it is exactly "
        "p − y (the probabilities minus the one-hot label); with squared error it also passes "
        "through the softmax's slope, which is almost flat where the net is sure, so a confidently "
        "wrong point sends back almost nothing."
    )
    cols = st.columns(3)
    figures = (
        images.class_bars_figure(o["logits"], "logits", signed=True),
        images.class_bars_figure(o["probabilities"], "probabilities"),
        images.class_bars_figure(o["gradient"], f"∂ loss / ∂ logit (loss {o['loss']:.3g})", signed=True),
    )
    for i, (col, fig) in enumerate(zip(cols, figures)):
        col.plotly_chart(fig, key=f"{KEY}-outputs-{i}", theme=None)


def after(view):
    explain(view)
    outputs(view)


def marked(view):
    return {"boundary": views.boundary(view, picked_point(view))} if view.state_dict is not None else {}


page.results(KEY, lab, views.VIEWS, after=after, selectable=("boundary",), replace=marked)
page.show_code(lab.train, lab.PlaygroundNet)
