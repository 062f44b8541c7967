"""Chapter 7 — Convolutional networks. UI only: the model and loop are labs/convnets.py."""

import streamlit as st

from components import page
from figures import images
from figures.views import convnets as views
from labs import convnets as lab

KEY = "convnets"
cfg = page.chapter(KEY, lab, views.VIEWS)


def _after_training(view):
    ds = lab.images(view.cfg)
    side = ds.X_test.shape[-1]
    model = page.memo(("model", view.id), lambda: lab.load_model(view.cfg, side, view.state_dict))
    st.subheader("One test image, layer by layer")
    left, right = st.columns([1, 3])
    index = left.number_input("Test image", 0, len(ds.X_test) - 1, 0, key=f"{KEY}-image")
    image = ds.X_test[index : index + 1]  # (1, 1, H, W)
    probs = page.memo(("probs", view.id, index), lambda: lab.predict(model, image))
    predicted = int(probs.argmax())
    target = left.selectbox(
        "Explain class",
        range(len(ds.classes)),
        index=predicted,
        format_func=lambda c: ds.classes[c],
        key=f"{KEY}-target-{index}",  # each image starts on its predicted class
    )
    left.caption(
        f"True: **{ds.classes[int(ds.y_test[index])]}**, predicted: "
        f"**{ds.classes[predicted]}** ({probs[predicted]:.0%})."
    )
    fmaps = page.memo(("fmaps", view.id, index), lambda: lab.feature_maps(model, image))
    for i, fmap in enumerate(fmaps):
        right.plotly_chart(
            images.mosaic_figure(
                fmap, cols=16, title=f"conv {i + 1} feature maps", height=140 + 60 * (len(fmap) // 16)
            ),
            key=f"{KEY}-fmap{i}",
            theme=None,
        )
    explained = page.memo(("captum", view.id, index, target), lambda: lab.explain(model, image, target))
    st.plotly_chart(
        images.attribution_grid_figure(image[0, 0].numpy(), explained["maps"]),
        key=f"{KEY}-captum",
        theme=None,
    )
    st.caption(
        f"Integrated Gradients convergence delta: {explained['ig_delta']:.1e} "
        "(how far its sum is from the score difference to a black image)."
    )
    m = view.view.get("mistakes")
    if m is not None and len(m["index"]):
        st.subheader("The most confident mistakes")
        titles = [
            f"#{i}: {ds.classes[t]}→{ds.classes[p]} {c:.0%}"
            for i, t, p, c in zip(m["index"], m["true"], m["pred"], m["confidence"])
        ]
        st.plotly_chart(images.labelled_images_figure(m["images"], titles), key=f"{KEY}-mistakes", theme=None)


page.results(KEY, lab, views.VIEWS, after=_after_training)
page.show_code(lab.train, lab.SmallCNN)
