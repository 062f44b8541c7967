"""Captum helpers: right shapes, IG completeness, and plotly scaling identical to Captum's."""

import numpy as np
import pytest
import torch
from captum.attr._utils.visualization import _normalize_attr

from labs import convnets, playground, playground_explain
from labs.core import attribution
from labs.core.hooks import hooks_left


@pytest.mark.parametrize("sign", ["all", "positive", "negative", "absolute_value"])
def test_normalization_matches_captum(sign):
    attr = np.random.default_rng(0).normal(size=(12, 12, 1))  # Captum's (H, W, C)
    ours = attribution.normalize_attribution(np.moveaxis(attr, -1, 0), sign)
    theirs = _normalize_attr(attr.sum(axis=2), sign, 2)  # Captum sums channels first
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_integrated_gradients_is_complete_on_the_playground_model():
    cfg = playground.Config(features=("x", "y", "x2", "xy"))
    model = playground.build_model(cfg)
    e = playground_explain.explain_point(model, cfg, (0.7, -0.4))
    assert e["attributions"].shape == (4,)
    assert abs(e["attributions"].sum() - (e["logit"] - e["baseline_logit"])) < 1e-3
    assert e["delta"] < 1e-3


def test_cnn_explanations_have_image_shape_and_leave_no_hooks():
    cfg = convnets.Config(dataset="digits8")
    model = convnets.build_model(cfg, 8)
    image = convnets.images(cfg).X_test[:1]
    e = convnets.explain(model, image, target=3)
    assert set(e["maps"]) == {"Saliency", "Integrated Gradients", "Occlusion", "Grad-CAM"}
    for m in e["maps"].values():
        assert m.shape == (8, 8) and np.abs(m).max() <= 1
    assert e["ig_delta"] < 0.05 and abs(e["probs"].sum() - 1) < 1e-5
    assert hooks_left(model) == 0 and not model.training


def test_attribution_restores_training_mode():
    model = playground.build_model(playground.Config())
    model.train()
    attribution.integrated_gradients(model, torch.randn(1, 2), target=0)
    assert model.training
