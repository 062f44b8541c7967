"""Chapter 1 — Tensors, autograd & gradient descent. UI only: the lab is labs/autograd.py."""

import streamlit as st

from components import live, page
from figures import curves, graph
from figures.views import autograd as views
from labs import autograd as lab
from labs import expression

KEY = "autograd"
cfg = page.chapter(KEY, lab, views.VIEWS)


def replay(view):
    """Once the run has ended: the fit and the descent as they were after any recorded step."""
    rows = view.view["path_steps"]
    if len(rows) < 3:
        return {}
    shown = st.select_slider(
        "Replay: coefficients after step",
        range(len(rows)),
        len(rows) - 1,
        format_func=lambda i: f"{rows[i]:,}",
        key=f"{KEY}-replay",
    )
    parts = views.draw(view, shown)
    return {"fit": parts["fit"], "surface": parts["surface"]}


view = live.show(KEY, views.VIEWS, replace=replay)
if view is not None:
    page.downloads(view, KEY)

st.subheader("Your own function: autograd against a finite difference")
text = st.text_input(
    "f(x) =",
    "x^2 * sin(x)",
    max_chars=expression.MAX_LENGTH,
    key=f"{KEY}-expr",
    help="Numbers, x, pi, e, + − × ÷ ^, ( ), sin cos exp log sqrt tanh. 2x means 2·x.",
)
try:
    d = expression.derivative(text)
except expression.ExpressionError as err:
    st.error(str(err), icon="✏️")
else:
    fig = curves.derivative_figure(d["x"], d["f"], d["autograd"], d["numeric"])
    st.plotly_chart(fig, key=f"{KEY}-expr-plot", theme=None)
    st.caption(
        f"Largest difference between the two derivatives: {d['max_gap']:.1e} "
        "(the finite difference is an approximation with error ~h²; autograd is exact up to rounding)."
        + (
            f" f is undefined or infinite at {d['undefined']} of the {len(d['x'])} points."
            if d["undefined"]
            else ""
        )
    )
    x0 = st.slider("Graph at x =", -3.0, 3.0, 1.0, 0.1, key=f"{KEY}-x0")
    g = expression.graph_at(text, x0)
    st.plotly_chart(graph.graph_figure(g), key=f"{KEY}-expr-graph", theme=None)
    st.caption(
        f"f({x0:g}) = {g['value']:.4g}; autograd's f′({x0:g}) = {g['slope']:.4g}: "
        "the local derivatives multiplied along each path from f back to x, summed over the paths."
    )

page.questions(lab.QUESTIONS, KEY, lab.EXPERIMENT, views.VIEWS)
page.show_code(lab.train, lab.hand_gradient, expression.evaluate)
