"""Chapter 8 — Modern CNNs & transfer learning. UI only: the experiments are labs/transfer.py,
what they show while they train figures/views/transfer.py."""

import streamlit as st

import chapters
from chapters import run_key
from components import controls, live, page
from figures import images
from figures.views import transfer as views
from labs import blocks
from labs import transfer as lab
from labs.similarity import linear_cka

PAGE = "transfer"
ADAPT, SWEEP, BLOCKS = run_key(PAGE, "adapt"), run_key(PAGE, "sweep"), run_key(PAGE, "blocks")
page.intro(PAGE, chapters.by_slug(PAGE).label)
adapt_tab, sweep_tab, blocks_tab = st.tabs(
    ["Transfer, three ways", "How many labels?", "Plain, residual, dense"]
)


def grad_cam_before_and_after(view) -> None:
    """One unseen digit, and where each way's net looks to read it (Grad-CAM on the last conv)."""
    cfg = view.cfg
    (_, _), (X_test, y_test) = page.memo(("target", cfg.seed), lambda: lab.target_digits(cfg.seed))
    models = page.memo(("models", view.id), lambda: lab.load_ways(cfg, view.state_dict))
    st.subheader("Where each net looks: Grad-CAM before and after fine-tuning")
    left, right = st.columns([1, 3])
    index = left.number_input("Test image (digits 5–9)", 0, len(X_test) - 1, 0, key=f"{ADAPT}-image")
    image, truth = X_test[index : index + 1], int(y_test[index])
    explained = page.memo(("cam", view.id, index), lambda: lab.grad_cams(models, image, truth))
    right.plotly_chart(
        images.attribution_grid_figure(image[0, 0].numpy(), explained["maps"]), key=f"{ADAPT}-cam", theme=None
    )
    left.caption(
        f"True digit **{lab.TARGET[truth]}**. "
        + "; ".join(
            f"{name}: **{lab.TARGET[p]}** ({c:.0%})" for name, (p, c) in explained["predictions"].items()
        )
        + ". The frozen backbone is the pre-trained net as it was, under its new head: Grad-CAM "
        "there is *before* fine-tuning."
    )


with adapt_tab:
    a_cfg = controls.config_controls(lab.Config, ADAPT, st.container())
    controls.link_notices(ADAPT)
    live.run_buttons(ADAPT, lab.ADAPT, a_cfg, views.ADAPT)
    adapt = live.show(ADAPT, views.ADAPT)
    if adapt is not None and adapt.state_dict:
        grad_cam_before_and_after(adapt)
    page.downloads(adapt, ADAPT)

with sweep_tab:
    st.caption(
        "Each point adapts the same pre-trained backbone afresh with that many labelled examples "
        "of each digit, three ways, and scores it on the same unseen digits."
    )
    s_cfg = controls.config_controls(lab.SweepConfig, SWEEP, st.container())
    controls.link_notices(SWEEP)
    live.run_buttons(SWEEP, lab.SWEEP, s_cfg, views.SWEEP)
    page.downloads(live.show(SWEEP, views.SWEEP), SWEEP)

with blocks_tab:
    b_cfg = controls.config_controls(blocks.BlocksConfig, BLOCKS, st.container())
    growth = blocks.dense_growth(b_cfg.depth, b_cfg.width)
    plain, dense = (blocks.conv_params(k, b_cfg.depth, b_cfg.width, growth) for k in ("plain", "dense"))
    st.caption(
        f"Weights in the stacks: plain and residual {plain:,}, dense {dense:,} "
        f"(each of its layers adds {growth} maps for all the layers above it)."
    )
    controls.link_notices(BLOCKS)
    live.run_buttons(BLOCKS, blocks.BLOCKS, b_cfg, views.BLOCKS)
    page.downloads(live.show(BLOCKS, views.BLOCKS), BLOCKS)

controls.share_link((a_cfg, ADAPT), (s_cfg, SWEEP), (b_cfg, BLOCKS))
page.questions(lab.QUESTIONS, ADAPT, lab.ADAPT, views.ADAPT)
page.show_code(lab.pretraining, lab.adapt, linear_cka, blocks.DeepCNN)
