"""Chapter 20 — Object detection. UI only: the scenes are labs/detection_scenes.py, the detector
labs/detector.py, the loop labs/detection.py, what they show figures/views/detection.py."""

import numpy as np
import streamlit as st

from components import page
from figures import plot
from figures.views import detection as views
from labs import detection as lab
from labs import detector

KEY = "detection"
PICK, CHOSEN = f"{KEY}-pick", f"{KEY}-chosen"
cfg = page.chapter(KEY, lab, views.VIEWS)


def _take_click() -> None:
    """A click on a box's label picks that detection (before the list is drawn)."""
    event = st.session_state.get(PICK)
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    if points and points[0].get("curve_number") == 1:
        st.session_state[CHOSEN] = int(points[0]["point_index"])


def _explain(view) -> None:
    c = view.cfg
    data = page.memo(
        ("scenes", c.train_scenes, c.clutter, c.touching, c.seed),
        lambda: lab.dataset(c.train_scenes, c.clutter, c.touching, c.seed),
    )
    models = page.memo(("models", view.id), lambda: lab.load(c, view.state_dict))
    st.subheader("One detection, explained")
    left, right = st.columns([1, 2])
    name = left.radio("Detector", list(models), key=f"{KEY}-model")
    index = left.number_input("Held-out scene", 0, len(data["X_test"]) - 1, 0, key=f"{KEY}-scene")
    image = data["X_test"][index : index + 1]
    info = page.memo(("found", view.id, name, index), lambda: lab.found_in(models[name], image, c))
    info["truth"] = data["B_test"][index].tolist()
    kept = info["after_nms"]
    if not kept:
        right.plotly_chart(
            views.scene_figure(info, f"{name}: held-out scene {index}"), key=f"{KEY}-scene-fig", theme=None
        )
        left.info("Nothing scored above the threshold here: lower it, or pick another scene.")
        return
    _take_click()
    labels = [f"{i}: {views.CLASSES[int(b[5])]} {b[4]:.2f}" for i, b in enumerate(kept)]
    if st.session_state.get(CHOSEN, 0) >= len(kept):
        st.session_state[CHOSEN] = 0
    chosen = left.selectbox("Detection", range(len(kept)), format_func=labels.__getitem__, key=CHOSEN)
    right.plotly_chart(
        views.scene_figure(info, f"{name}: held-out scene {index}", chosen),
        key=PICK,
        on_select="rerun",
        selection_mode="points",
        theme=None,
    )
    box = kept[chosen]
    explained = page.memo(
        ("explain", view.id, name, index, chosen),
        lambda: lab.explain(models[name], image, int(box[6]), int(box[5])),
    )
    st.plotly_chart(_attribution_figure(info["image"], explained["map"], box), key=f"{KEY}-ig", theme=None)
    st.caption(
        f"Integrated Gradients of the “{views.CLASSES[int(box[5])]}” score of cell (row {explained['row']}, "
        f"column {explained['col']}), the cell that made this box, from a flat grey image: blue pixels "
        f"raised the score, red lowered it. Convergence delta {explained['delta']:.3f}. Click a box's "
        "label to pick it."
    )


def _attribution_figure(image: np.ndarray, attribution: np.ndarray, box: list) -> dict:
    scale = (
        float(np.percentile(np.abs(attribution), 99.5)) or 1.0
    )  # a few extreme pixels would wash out the rest
    data = [
        plot.heatmap(
            image, "Greys", showscale=False, reversescale=True, hoverinfo="skip", xaxis="x", yaxis="y"
        ),
        plot.heatmap(
            attribution / scale, "RdBu", zmin=-1, zmax=1, xaxis="x2", yaxis="y2", colorbar={"thickness": 10}
        ),
    ]
    rect = {"type": "rect", "x0": box[0] - 0.5, "y0": box[1] - 0.5, "x1": box[2] - 0.5, "y1": box[3] - 0.5}
    shapes = [
        {**rect, "line": {"color": "#111111", "width": 2}},
        {**rect, "xref": "x2", "yref": "y2", "line": {"color": "#111111", "width": 2}},
    ]
    fig = plot.figure(
        data,
        "the scene, and which pixels made this detection's class (IG)",
        340,
        legend=False,
        shapes=shapes,
        xaxis={"domain": [0, 0.45], "visible": False},
        yaxis={"autorange": "reversed", "scaleanchor": "x", "visible": False},
        xaxis2={"domain": [0.52, 1], "visible": False},
        yaxis2={"autorange": "reversed", "scaleanchor": "x2", "visible": False, "anchor": "x2"},
    )
    return fig


page.results(KEY, lab, views.VIEWS, after=_explain)
page.show_code(
    lab.train_one, detector.targets, detector.loss_parts, detector.detect, detector.average_precision
)
