"""Chapter 1 — Tensors, autograd & gradient descent. UI only: the lab is labs/autograd.py."""

import streamlit as st

from components import curves, graph, landscape, live, page
from labs import autograd as lab
from labs import expression

KEY = "autograd"
cfg = page.chapter(KEY, lab)


def draw(view):
    if view is None or not view.history:
        return
    v, last = view.view, view.history[-1]
    cols = st.columns(3)
    cols[0].metric("loss (all points)", f"{last['loss']:.4f}")
    cols[1].metric("gradient norm", f"{last['gradient norm']:.2e}")
    cols[2].metric("hand vs autograd, max |Δ|", f"{last['hand vs autograd']:.1e}")
    rows = v["path_steps"]
    shown = len(rows) - 1
    if not view.alive and shown > 1:  # replay the descent once the run has ended
        shown = st.select_slider(
            "Replay: coefficients after step",
            range(len(rows)),
            shown,
            format_func=lambda i: f"{rows[i]:,}",
            key=f"{KEY}-replay",
        )
    names = [f"c{i}" for i in range(v["path"].shape[1])]
    left, right = st.columns(2)
    left.plotly_chart(
        curves.fit_figure(
            v["x"], v["y"], v["grid"], lab.fit_at(v, shown), f"the fit after step {rows[shown]:,}"
        ),
        key=f"{KEY}-fit",
    )
    surface = {"x": v["surface"]["c0"], "y": v["surface"]["c1"], "z": v["surface"]["loss"]}
    path = {"descent": v["path"][: shown + 1, :2]}
    right.plotly_chart(
        landscape.trajectories_figure(surface, path, [tuple(v["best"][:2])]), key=f"{KEY}-surface"
    )
    right.caption(
        "Loss over (c0, c1), the other coefficients held at their current values; "
        "★ the exact least-squares fit."
    )
    left, right = st.columns(2)
    left.plotly_chart(
        curves.series_figure(v["grads"], names, "each coefficient's gradient", steps=v["record_steps"]),
        key=f"{KEY}-grads",
    )
    right.plotly_chart(
        curves.series_figure(
            v["losses"], ["loss"], "loss on all points", log_y=True, steps=v["record_steps"]
        ),
        key=f"{KEY}-loss",
    )
    st.subheader("The graph autograd recorded for the loss")
    st.plotly_chart(graph.graph_figure(v["graph"]), key=f"{KEY}-graph")
    page.downloads(view, KEY)


live.live(KEY, draw)

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
    st.plotly_chart(fig, key=f"{KEY}-expr-plot")
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
    st.plotly_chart(graph.graph_figure(g), key=f"{KEY}-expr-graph")
    st.caption(
        f"f({x0:g}) = {g['value']:.4g}; autograd's f′({x0:g}) = {g['slope']:.4g}: "
        "the local derivatives multiplied along each path from f back to x, summed over the paths."
    )

page.questions(lab.QUESTIONS, KEY, lab.EXPERIMENT)
page.show_code(lab.train, lab.hand_gradient, expression.evaluate)
