"""What the chapters' explanations claim (content/*.md), measured on the lab's own code, so a
sentence cannot drift from what the page shows."""

import pytest
import torch

from labs import initialization, normalization, playground
from labs.core import mlp

CPU = torch.device("cpu")


@pytest.mark.lesson
def test_xavier_fits_tanh_and_still_loses_four_times_per_sigmoid_layer(seed, lesson):
    """content/initialization.md: Xavier assumes slope 1 at 0 (tanh); the sigmoid's is 1/4."""

    def per_layer(activation: str) -> float:
        cfg = initialization.Config(depth=20, activation=activation, init="xavier", steps=10, seed=seed)
        rms = [s["grad_rms"] for s in next(initialization.train(cfg, CPU)).layers.values()][:-1]
        return (rms[0] / rms[-1]) ** (1 / (len(rms) - 1))  # the mean factor from layer to layer

    lesson.expect("Xavier + tanh: gradient kept per layer", per_layer("tanh"), ">", 0.8)
    sigmoid = per_layer("sigmoid")
    lesson.expect("Xavier + sigmoid: gradient kept per layer (about 1/4)", sigmoid, "<", 0.3)
    lesson.expect("Xavier + sigmoid: gradient kept per layer (about 1/4)", sigmoid, ">", 0.18)


@pytest.mark.lesson
def test_without_branch_scaling_thirty_residual_blocks_start_several_times_too_loud(seed, lesson):
    """content/normalization.md: the 1/√depth scaling of each branch keeps the forward signal
    from blowing up; the skip path alone does not."""
    r = normalization.recipe(normalization.Config(depth=30, seed=seed), "residual")
    torch.manual_seed(seed)
    scaled = mlp.build(r)
    torch.manual_seed(seed)
    raw = mlp.DeepMLP(28 * 28, 10, r.width, r.depth, r.activation, r.norm, r.residual)
    mlp.initialize(raw, r.init, r.activation)
    x = torch.rand(256, 28 * 28, generator=torch.Generator().manual_seed(100))
    with torch.no_grad():
        ratio = (raw(x).std() / scaled(x).std()).item()
    lesson.expect("30 residual blocks: output size unscaled / scaled", ratio, ">", 2.5)


def test_momentum_makes_weight_decay_about_ten_times_stronger():
    """content/regularization.md: SGD's weight decay shrinks a weight by (1 − ηλ) per step;
    with momentum 0.9, as the lab trains, by about (1 − 10ηλ) once the momentum has built up."""
    lr, decay = 0.02, 5e-3  # the chapter's defaults

    def shrink_per_step(momentum: float) -> float:
        w = torch.ones(1, requires_grad=True)
        opt = torch.optim.SGD([w], lr=lr, momentum=momentum, weight_decay=decay)
        for _ in range(300):  # no loss at all: only the decay pulls
            before = w.item()
            w.grad = torch.zeros(1)
            opt.step()
        return (1 - w.item() / before) / (lr * decay)

    assert shrink_per_step(0.0) == pytest.approx(1.0, rel=1e-3)
    assert 9.0 < shrink_per_step(0.9) < 10.5


@pytest.mark.lesson
def test_a_model_with_no_hidden_layer_draws_a_circle_from_squared_features(seed, lesson):
    """content/playground.md: no hidden layer is one straight boundary in feature space, which
    is a curve on the plane when the features are x² and y²."""

    def accuracy(features: tuple) -> float:
        cfg = playground.Config(dataset="circles", hidden_layers=0, features=features, epochs=60, seed=seed)
        return list(playground.train(cfg, CPU))[-2].metrics["test_acc"]

    squares = accuracy(("x", "y", "x2", "y2"))
    lesson.expect("circles, no hidden layer, x y x² y²: test accuracy", squares, ">", 0.9)
    lesson.expect("circles, no hidden layer, x y: test accuracy", accuracy(("x", "y")), "<", 0.75)
