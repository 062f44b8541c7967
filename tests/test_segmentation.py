"""Chapter 9: the U-Net's skips put the edges back (boundary IoU over seeds), and the pieces
(images, edge band, Dice, IoU, the pixel explanation, the views) mean what they say."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from figures.views import segmentation as views
from labs import segmentation as seg
from tests.runs import run_view


@pytest.fixture(scope="module")
def trained(seed):
    cfg = seg.Config(seed=seed)
    return cfg, run_view(seg.train, cfg)


@pytest.mark.lesson
def test_the_skips_give_a_higher_boundary_iou(trained, lesson):
    _, view = trained
    unet, plain = (view.last(f"{seg.VARIANTS[v]}: boundary IoU") for v in ("unet", "no_skips"))
    # measured over seeds 0-3 (IoU on the 2-pixel band around every edge, 64 test images):
    # U-Net 0.56 / 0.60 / 0.63 / 0.49, without skips 0.37 / 0.27 / 0.26 / 0.25 (differences
    # 0.19 / 0.28 / 0.33 in the test harness over seeds 0-2)
    lesson.expect("U-Net vs no skips: boundary IoU difference", unet - plain, ">", 0.08)


@pytest.mark.lesson
def test_the_unets_evidence_for_an_edge_pixel_lies_near_it(trained, lesson):
    cfg, view = trained
    models = seg.load(cfg, view.state_dict)
    _, X_test, M_test = seg.dataset(cfg.train_images, cfg.noise, cfg.seed)
    near = {name: [] for name in models}
    for i in range(8):
        row, col = seg.edge_pixel(M_test[i])
        for name, model in models.items():
            near[name].append(seg.explain_pixel(model, X_test[i : i + 1], row, col)["near"])
    unet, plain = (float(np.mean(near[seg.VARIANTS[v]])) for v in ("unet", "no_skips"))
    # measured over seeds 0-2 (share of |IG| within 5 pixels of 8 edge pixels): U-Net about 0.5,
    # no skips about 0.2; differences 0.35 / 0.38 / 0.46
    lesson.expect(
        "U-Net vs no skips: IG share within 5 px of an edge pixel, difference", unet - plain, ">", 0.12
    )


@pytest.mark.lesson
def test_the_question_is_settled_by_its_run_as_the_chapter_teaches(trained, lesson):
    cfg, view = trained
    (question,) = seg.QUESTIONS
    # the question's run is the default run of this seed: the one trained above
    assert all(getattr(cfg, k) == v for k, v in question.settings.items())
    answer, evidence = question.outcome(view)
    lesson.expect(f"question: {question.prompt[:60]}…", answer, "==", "the U-Net", evidence)


def test_images_hold_apart_shapes_of_every_class_and_are_the_same_however_many_are_made():
    X, M = seg.shapes(40, 0.1, seed=3)
    assert X.shape == (40, 1, seg.SIDE, seg.SIDE) and M.shape == (40, seg.SIDE, seg.SIDE)
    assert set(M.unique().tolist()) == set(range(len(seg.CLASSES)))
    assert (M > 0).flatten(1).any(1).all()  # every image holds a shape
    X5, M5 = seg.shapes(5, 0.1, seed=3)
    assert torch.equal(X5, X[:5]) and torch.equal(M5, M[:5])
    lazy = seg.TrainingImages(40, 0.1, seed=3)
    x, m = lazy.batch(torch.tensor([7, 2, 7]))
    assert torch.equal(x[0], X[7]) and torch.equal(m[1], M[2]) and lazy.made.sum() == 2


def test_the_edge_band_lies_around_outlines_only():
    masks = torch.zeros(1, 20, 20, dtype=torch.long)
    masks[0, 5:15, 5:15] = 2
    band = seg.boundary_band(masks, width=2)[0]
    assert band[5, 10] and band[4, 10] and band[6, 10]  # either side of the top edge
    assert not band[10, 10] and not band[0, 0]  # the square's middle, a far corner
    assert band.sum() == 14 * 14 - 6 * 6  # a ring 4 pixels wide: 14×14 minus the 6×6 middle
    assert seg.edge_pixel(masks[0]) == (10, 14)  # the square's last pixel right of its centre
    _, M = seg.shapes(20, 0.1, seed=4)
    for mask in M:
        row, col = seg.edge_pixel(mask)
        assert mask[row, col] > 0 and seg.boundary_band(mask[None])[0, row, col]


def test_soft_dice_is_zero_for_a_sure_right_answer_and_iou_counts_each_class():
    masks = torch.tensor([[[0, 1], [2, 3]]])
    sure = 50 * F.one_hot(masks, 4).permute(0, 3, 1, 2).float()
    assert seg.soft_dice_loss(sure, masks).item() == pytest.approx(0.0, abs=1e-4)
    assert seg.soft_dice_loss(-sure, masks).item() > 0.5
    pred = torch.tensor([[[0, 1], [1, 3]]])  # the square's one pixel called a circle
    ious = seg.iou_per_class(pred, masks)
    assert ious[0] == 1 and ious[1] == 0.5 and ious[2] == 0 and ious[3] == 1


def test_views_and_the_pixel_explanation_after_a_short_run():
    cfg = seg.Config(steps=40, train_images=100)
    view = run_view(seg.train, cfg)
    parts = views.draw(view)
    assert {"masks", "edges", "classes", "confusion: U-Net", "confusion: no skips"} <= set(parts)
    shares = np.asarray(parts["confusion: U-Net"]["data"][0]["z"])
    assert np.allclose(shares.sum(1), 100, atol=2)  # each true class's pixels, in %
    models = seg.load(cfg, view.state_dict)
    _, X_test, M_test = seg.dataset(cfg.train_images, cfg.noise, cfg.seed)
    explained = seg.explain_pixel(models["U-Net"], X_test[:1], 30, 33)
    assert explained["map"].shape == (seg.SIDE, seg.SIDE)
    assert np.abs(explained["map"]).max() == pytest.approx(1.0)
    assert explained["probs"].sum() == pytest.approx(1.0, abs=1e-5)
    assert explained["target"] == int(explained["probs"].argmax())
    assert 0 < explained["near"] <= 1
    pick = views.pick_figure(X_test[0, 0].numpy(), M_test[0].numpy(), 30, 33, seg.CLASSES)
    assert len(pick["data"][2]["x"]) == 2 * seg.SIDE**2  # a click target on every pixel of both halves
