"""Chapter 16: a strong discriminator with the minimax loss collapses modes the tuned
non-saturating GAN keeps; the losses mean what the chapter says; the views draw the plane."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from figures.views import gans as views
from labs import gans
from tests.runs import run_view

STRONG_D = {"loss": "minimax", "d_steps": 5, "d_lr": 0.005}


@pytest.mark.lesson
def test_a_too_strong_discriminator_covers_fewer_modes_than_the_tuned_gan(seed, lesson):
    tuned = run_view(gans.train, gans.Config(steps=1500, seed=seed))
    strong = run_view(gans.train, gans.Config(steps=1500, seed=seed, **STRONG_D))
    tuned_modes, strong_modes = gans.late_coverage(tuned), gans.late_coverage(strong)
    # measured over seeds 0-2 (modes, last quarter of the run):
    # tuned 7.6 / 7.0 / 7.4, strong D 3.6 / 4.4 / 2.3
    lesson.expect(
        "GAN ring: modes kept by the tuned GAN minus the strong-D minimax GAN",
        tuned_modes - strong_modes,
        ">",
        1.5,
    )
    lesson.expect("GAN ring: modes kept by the tuned GAN", tuned_modes, ">", 6.0)


@pytest.mark.lesson
def test_each_question_is_settled_by_its_run_as_the_chapter_teaches(seed, lesson):
    for question, expected in zip(gans.QUESTIONS, ("fewer", "all 8"), strict=True):
        cfg = replace(gans.Config(), **question.settings, seed=seed)
        answer, evidence = question.outcome(run_view(gans.train, cfg))
        lesson.expect(f"question: {question.prompt[:60]}…", answer, "==", expected, evidence)


def test_the_minimax_generator_gets_no_gradient_where_d_is_sure_and_the_non_saturating_one_does():
    sure_fake = torch.nn.Linear(2, 1)
    with torch.no_grad():
        sure_fake.weight.zero_()
        sure_fake.bias.fill_(-10.0)  # D(x) = sigmoid(-10) everywhere: "fake", with confidence
        sure_fake.weight[0, 0] = 1e-3
    points = torch.zeros(8, 2, requires_grad=True)
    slopes = {}
    for kind in ("minimax", "non_saturating"):
        (grad,) = torch.autograd.grad(gans.g_loss(kind, sure_fake, points), points)
        slopes[kind] = grad.norm().item()
    assert slopes["non_saturating"] > 1000 * slopes["minimax"]


def test_the_gradient_penalty_is_zero_for_a_unit_slope_critic():
    critic = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[0.6, 0.8]]))
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    assert gans.gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_mode_counting_sees_a_collapsed_and_a_full_ring():
    g = torch.Generator().manual_seed(0)
    full = gans.sample_target("ring", 800, g)
    assert gans.modes_covered(full) == (8, pytest.approx(1.0, abs=0.02))
    one_mode = gans.ring_centres()[0] + 0.05 * torch.randn(800, 2, generator=g)
    assert gans.modes_covered(one_mode)[0] == 1


@pytest.mark.parametrize("target", gans.TARGETS)
def test_every_target_trains_and_the_plane_is_drawn(target):
    view = run_view(gans.train, gans.Config(target=target, steps=100))
    parts = views.draw(view)
    assert "plane" in parts and ("modes" in parts) == (target == "ring")
    plane = parts["plane"]["data"]
    assert len(plane[2]["x"]) == gans.SHOWN  # every generated point, and
    # an arrow on 64 of them: one line of (start, end, gap) triples, starting at the points
    xs, ys = np.asarray(plane[3]["x"]).reshape(-1, 3), np.asarray(plane[3]["y"]).reshape(-1, 3)
    assert len(xs) == gans.ARROWS and np.isnan(xs[:, 2]).all() and np.isfinite(xs[:, :2]).all()
    assert np.array_equal(xs[:, 0], plane[2]["x"][: gans.ARROWS])
    assert np.array_equal(ys[:, 0], plane[2]["y"][: gans.ARROWS])
    lengths = np.hypot(xs[:, 1] - xs[:, 0], ys[:, 1] - ys[:, 0])
    assert lengths.max() == pytest.approx(views.ARROW_LENGTH, rel=1e-4)  # the longest is scaled to it


def test_the_dcgan_draws_32_digits_from_fixed_noise_and_its_losses_move():
    view = run_view(gans.train_digits, gans.DigitsConfig(steps=60))
    assert view.view["samples"].shape == (32, 28, 28)
    d = view.series("d_loss")[1]
    assert d[0] != d[-1]
    assert "samples" in views.draw_digits(view)
