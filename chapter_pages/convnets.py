"""Chapter 7 — Convolutional networks. UI only: the model and loop are labs/convnets.py."""

import streamlit as st

from components import curves, images, layers, live, page
from labs import convnets as lab

KEY = "convnets"
cfg = page.chapter(KEY, lab)


def draw(view):
    if view is None or not view.history:
        return
    last, v = view.history[-1], view.view
    cols = st.columns(3)
    cols[0].metric("test accuracy", f"{last['test_acc']:.1%}")
    cols[1].metric("test loss", f"{last['test_loss']:.3f}")
    cols[2].metric("epoch", f"{last['epoch']:.1f}")
    left, right = st.columns(2)
    with left:
        curves.show_curves(view.history, ["train_loss", "test_loss"], f"{KEY}-loss", title="loss")
        curves.show_curves(view.history, ["test_acc"], f"{KEY}-acc", title="test accuracy")
    with right:
        st.plotly_chart(images.confusion_figure(v["confusion"], v["classes"]), key=f"{KEY}-cm")
        title = "first-layer filters" if view.cfg.model == "cnn" else "first-layer weights (16 units)"
        st.plotly_chart(
            images.mosaic_figure(v["filters"], cols=8, title=title, height=200), key=f"{KEY}-filters"
        )
    st.subheader("Inside the layers")
    layers.show_layers(view.layer_history, (-0.5, 4.0), KEY)
    if view.state_dict is not None:
        _after_training(view)
    page.downloads(view, KEY)


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
        )
    explained = page.memo(("captum", view.id, index, target), lambda: lab.explain(model, image, target))
    st.plotly_chart(
        images.attribution_grid_figure(image[0, 0].numpy(), explained["maps"]), key=f"{KEY}-captum"
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
        st.plotly_chart(images.labelled_images_figure(m["images"], titles), key=f"{KEY}-mistakes")


live.live(KEY, draw)
page.questions(lab.QUESTIONS, KEY, lab.EXPERIMENT)
page.show_code(lab.train, lab.SmallCNN)
