"""Chapter 19 — Taking a model to production. UI only: export, quantization, pruning and timing
are labs/production.py, what they show figures/views/production.py, the canvas
components/canvas.py."""

import numpy as np
import pandas as pd
import streamlit as st

import chapters
from components import canvas, controls, live, page, serving
from figures import images
from figures.views import production as views
from labs import deploy
from labs import production as lab

KEY = "production"
page.intro(KEY, chapters.by_slug(KEY).label)
cfg = controls.config_controls(lab.Config, KEY)
controls.share_link((cfg, KEY))
controls.link_notices(KEY)
if not deploy.onnx_available():
    st.warning(deploy.ONNX_MISSING)


live.run_buttons(
    KEY,
    page.with_cnn_from_cnn_chapter(lab.EXPERIMENT, cfg, "Deploying", "Hidden units and epochs"),
    cfg,
    views.VIEWS,
)


def exported_downloads(files: dict, run_id: str) -> None:
    names = {
        "ONNX (onnxruntime)": ("ONNX model (.onnx)", "onnx"),
        "torch.export (.pt2)": ("torch.export program (.pt2)", "pt2"),
    }
    columns = st.columns(2)
    for column, (name, (label, ext)) in zip(columns, names.items()):
        if name in files:
            column.download_button(
                f"Download {label}",
                files[name],
                f"{KEY}-{run_id}.{ext}",
                key=f"{KEY}-dl-{ext}",
                on_click="ignore",
            )
        elif ext == "onnx":
            column.caption("No ONNX file: onnx or onnxruntime is missing on this server.")


def serve(view) -> None:
    """The exported files, then the canvas: a drawn digit, preprocessed as the training digits
    were, through every variant, with each one's answer and how long it took."""
    files = view.view.get("files") or {}
    exported_downloads(files, view.id)
    variants = page.memo(
        ("served", view.id),
        lambda: lab.served_variants(view.cfg, view.state_dict, files, view.view.get("pretrained_cfg")),
    )
    example = page.memo(("example", view.id), lambda: lab.digits(view.cfg.seed).X_test[0, 0].numpy())
    serving.http_endpoint(KEY, lambda which: lab.predictor(variants, which), lab.SERVABLE, example)
    st.subheader("Draw a digit")
    left, middle, right = st.columns([1.1, 1, 1.4])
    with left:
        pixels = canvas.drawing(f"{KEY}-canvas")
    if pixels is None:
        middle.info("Draw a digit on the black square: each variant answers when you lift the pen.")
        return
    image = lab.preprocess(pixels)
    if image is None:
        middle.info("The canvas is blank: draw a digit.")
        return
    naive = lab.shrink(pixels)
    middle.plotly_chart(
        images.image_figure(image[0, 0].numpy(), "what the model sees", 230),
        key=f"{KEY}-seen",
        theme=None,
    )
    middle.plotly_chart(
        images.image_figure(naive[0, 0].numpy(), "the canvas just shrunk", 230),
        key=f"{KEY}-naive",
        theme=None,
    )
    key = hash(np.round(pixels, 2).tobytes())
    answers = page.memo(("answers", view.id, key), lambda: lab.serve(variants, image))
    naive_answer = page.memo(
        ("naive", view.id, key), lambda: lab.serve({"float32": variants["float32 (eager)"]}, naive)
    )
    rows = [
        {
            "variant": name,
            "prediction": int(a["probs"].argmax()),
            "confidence": f"{a['probs'].max():.0%}",
            "ms": f"{a['ms']:.3f}",
        }
        for name, a in answers.items()
    ]
    right.container(key=f"{KEY}-answers").table(pd.DataFrame(rows).set_index("variant"))
    shrunk = naive_answer["float32"]["probs"]
    right.caption(
        "ms: median of 20 calls after 5 warm-up calls, on this server. "
        f"Without the preprocessing (the canvas merely shrunk), float32 says **{int(shrunk.argmax())}** "
        f"({shrunk.max():.0%}). Training digits were cropped to their ink, scaled to fit 20×20 and "
        "centred by their centre of mass in 28×28; a model served other pictures than it learned on "
        "answers confidently anyway."
    )


page.results(KEY, lab, views.VIEWS, after=serve)
page.show_code(deploy.export, deploy.quantize, deploy.pruned_copy, deploy.latency_ms, lab.preprocess)
