"""Chapter 9 — Segmentation. UI only: the nets and loop are labs/segmentation.py, what they show
while they train figures/views/segmentation.py."""

import streamlit as st

from components import page
from figures.views import segmentation as views
from labs import segmentation as lab

KEY = "segmentation"
PICK, ROW, COL = f"{KEY}-pick", f"{KEY}-row", f"{KEY}-col"
cfg = page.chapter(KEY, lab, views.VIEWS)


def _take_click() -> None:
    """A click on the picture moves the row and column sliders (before they are drawn): the
    sliders stay the one source of the pixel, and a stale click never pulls them back."""
    event = st.session_state.get(PICK)
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    if not points:
        return
    x, y = int(round(points[0]["x"])), int(round(points[0]["y"]))
    clicked = (x % (lab.SIDE + 4), y)  # either half of the picture: the image or its true mask
    if clicked != st.session_state.get(f"{KEY}-clicked"):
        st.session_state[f"{KEY}-clicked"] = clicked
        st.session_state[COL], st.session_state[ROW] = (min(v, lab.SIDE - 1) for v in clicked)


def _explain(view) -> None:
    """Integrated Gradients of one pixel's class, for each net: what in the image decided it."""
    c = view.cfg
    _, X_test, M_test = lab.dataset(c.train_images, c.noise, c.seed)
    models = page.memo(("models", view.id), lambda: lab.load(c, view.state_dict))
    st.subheader("One pixel, explained")
    left, right = st.columns([1, 2])
    _take_click()
    index = left.number_input("Test image", 0, len(X_test) - 1, 0, key=f"{KEY}-image")
    if st.session_state.get(f"{KEY}-shown") != index:  # another image: start on its outline
        st.session_state[f"{KEY}-shown"] = index
        st.session_state[ROW], st.session_state[COL] = lab.edge_pixel(M_test[index])
    row = left.slider("Row", 0, lab.SIDE - 1, key=ROW)
    col = left.slider("Column", 0, lab.SIDE - 1, key=COL)
    image, truth = X_test[index : index + 1], M_test[index]
    right.plotly_chart(
        views.pick_figure(image[0, 0].numpy(), truth.numpy(), row, col, lab.CLASSES),
        key=PICK,
        on_select="rerun",
        selection_mode="points",
        theme=None,
    )
    left.caption(
        f"True class there: **{lab.CLASSES[int(truth[row, col])]}**. Click a pixel, or use the sliders."
    )
    explained = page.memo(
        ("pixel", view.id, index, row, col),
        lambda: {name: lab.explain_pixel(m, image, row, col) for name, m in models.items()},
    )
    maps = {f"{name}: IG for “{lab.CLASSES[e['target']]}”": e["map"] for name, e in explained.items()}
    st.plotly_chart(
        views.pixel_attribution_figure(image[0, 0].numpy(), maps, row, col), key=f"{KEY}-ig", theme=None
    )
    left.plotly_chart(
        views.probabilities_figure({n: e["probs"] for n, e in explained.items()}, lab.CLASSES),
        key=f"{KEY}-probs",
        theme=None,
    )
    st.caption(
        "Integrated Gradients of each net's winning class logit at the marked pixel, from a flat "
        "grey image (blue raised that class, red lowered it). The U-Net's evidence is mostly the "
        "pixels around the marked one, which its skips carry straight to the output; the net "
        "without skips draws on pixels all over the image, through its 4×4 bottleneck. "
        f"Share of the evidence within {lab.NEAR} pixels: "
        + ", ".join(f"{n} **{e['near']:.0%}**" for n, e in explained.items())
        + ". Convergence delta: "
        + ", ".join(f"{n} {e['delta']:.3f}" for n, e in explained.items())
        + "."
    )


page.results(KEY, lab, views.VIEWS, after=_explain)
page.show_code(lab.train_one, lab.UNet, lab.soft_dice_loss)
