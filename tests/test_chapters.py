"""Each chapter: the loss falls on a tiny config, and the chapter's lesson holds."""

from dataclasses import replace

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from figures import images
from labs import convnets, optimizers, playground, playground_explain, playground_stacked
from labs.core import data
from tests.runs import run_view

CPU = torch.device("cpu")


def run(train, cfg):
    """Train to the end: (metric history, final snapshot)."""
    history, snap = [], None
    for snap in train(cfg, CPU):
        if snap.metrics:
            history.append(snap.metrics)
    return history, snap


# ---------------------------------------------------------------- playground


def test_playground_loss_falls_on_a_tiny_config():
    history, final = run(playground.train, playground.Config(epochs=10, points=200))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert final.final and final.state_dict is not None


@pytest.mark.lesson
def test_a_line_cannot_fit_the_spiral_but_two_relu_layers_can(seed, lesson):
    spiral = playground.Config(dataset="spiral", noise=0.1, points=600, epochs=200, seed=seed)
    linear, _ = run(playground.train, replace(spiral, hidden_layers=0))
    deep, _ = run(playground.train, replace(spiral, hidden_layers=2, units=8, activation="relu"))
    # chance is 50%: a line through two interleaved arms gets little more
    lesson.expect("spiral: test accuracy of a line", linear[-1]["test_acc"], "<", 0.70)
    lesson.expect("spiral: test accuracy of 2×8 ReLU", deep[-1]["test_acc"], ">", 0.90)


def test_playground_views_cover_every_hidden_unit():
    cfg = playground.Config(hidden_layers=3, units=5, epochs=5)
    _, final = run(playground.train, cfg)
    snap = next(playground.train(cfg, CPU))
    assert [m.shape for m in snap.view["neurons"]] == [(5, playground.GRID, playground.GRID)] * 3
    assert snap.view["boundary"].shape == (playground.GRID, playground.GRID)
    assert set(snap.layers) == {"layer 1", "layer 2", "layer 3", "output"}


def test_a_softmax_colours_each_class_and_its_gradient_is_p_minus_y():
    cfg = playground.Config(dataset="pinwheel5", epochs=5, points=200)
    _, final = run(playground.train, cfg)
    snap = next(playground.train(cfg, CPU))
    probs = snap.view["boundary"]
    assert probs.shape == (5, playground.GRID, playground.GRID)
    assert abs(probs.sum(0) - 1).max() < 1e-5 and snap.view["classes"] == 5
    fig = images.class_regions_figure(
        probs, 1.5, *(snap.view[k] for k in ("X_train", "y_train", "X_test", "y_test"))
    )
    go.Figure(fig)  # plotly accepts the figure as it is sent, colour scale and all
    model = playground.load_model(cfg, final.state_dict)
    out = playground_explain.point_outputs(model, cfg, (0.3, -0.2), label=2)
    p, one_hot = out["probabilities"], np.eye(5)[2]
    assert np.allclose(out["gradient"], p - one_hot, atol=1e-6)  # cross-entropy's gradient on the logits
    assert playground_explain.explain_point(model, cfg, (0.3, -0.2))["class"] == int(np.argmax(out["logits"]))
    assert playground_stacked.stacking_key(cfg) is None  # a softmax run trains alone


def test_a_clicked_point_is_labelled_by_the_nearest_drawn_point():
    points = {
        "X_train": np.array([[0.0, 0.0]]),
        "y_train": np.array([3]),
        "X_test": np.array([[1.0, 1.0]]),
        "y_test": np.array([1]),
    }
    assert (
        playground_explain.label_near(points, (0.9, 0.8)) == 1
        and playground_explain.label_near(points, (0.1, 0)) == 3
    )


@pytest.mark.lesson
def test_a_softmax_over_five_classes_learns_the_pinwheel(seed, lesson):
    history, _ = run(playground.train, playground.Config(dataset="pinwheel5", epochs=60, seed=seed))
    # five classes: chance is 20%
    lesson.expect("pinwheel, 5 classes: test accuracy of 2×8 ReLU", history[-1]["test_acc"], ">", 0.85)


@pytest.mark.lesson
def test_squared_error_barely_learns_from_confident_mistakes(seed, lesson):
    """A net trained to confidence, then every label moved to the next class: each point is a
    confident mistake. Cross-entropy's gradient on them is p - y (|·|₁ near 2) and the net
    relearns; squared error's passes through the flat softmax and hardly moves it."""
    cfg = playground.Config(dataset="blobs3", epochs=40, seed=seed)
    _, final = run(playground.train, cfg)
    X, y = data.two_d(cfg.dataset, cfg.points, cfg.noise, cfg.seed)
    inputs, moved = playground.featurize(X, cfg.features), (y + 1) % 3
    for loss in playground.LOSSES:
        judged = replace(cfg, loss=loss)
        model = playground.load_model(cfg, final.state_dict)
        confident = playground.probabilities(model(inputs)).max(1).values > 0.99
        grads = [
            abs(
                playground_explain.point_outputs(model, judged, tuple(X[i].tolist()), int(moved[i]))[
                    "gradient"
                ]
            ).sum()
            for i in torch.nonzero(confident)[:20, 0]
        ]
        lesson.expect(
            f"relabelled blobs: median gradient on the logits of a confident mistake, {loss}",
            float(np.median(grads)),
            ">" if loss == "cross_entropy" else "<",
            1.5 if loss == "cross_entropy" else 0.05,
        )
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(200):  # full-batch steps on the moved labels
            opt.zero_grad()
            playground.objective(judged, model(inputs), moved).backward()
            opt.step()
        accuracy = (playground.predictions(model(inputs)) == moved).float().mean().item()
        # three classes: the old labels score 0% on the moved ones, a constant guess 33%
        if loss == "cross_entropy":
            lesson.expect("relabelled blobs: accuracy after 200 steps, cross-entropy", accuracy, ">", 0.9)
        else:
            lesson.expect("relabelled blobs: accuracy after 200 steps, squared error", accuracy, "<", 0.75)


# ---------------------------------------------------------------- convolutional networks


def test_cnn_loss_falls_on_a_tiny_config():
    history, final = run(convnets.train, convnets.Config(dataset="digits8", epochs=2))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert set(final.view["mistakes"]) >= {"index", "images", "true", "pred", "confidence"}


@pytest.mark.lesson
def test_the_cnn_beats_a_same_size_mlp_on_digits(seed, lesson):
    cnn_cfg = convnets.Config(dataset="mnist_subset", epochs=3, seed=seed)
    cnn, _ = run(convnets.train, cnn_cfg)
    mlp, _ = run(convnets.train, replace(cnn_cfg, model="mlp"))
    side = 28
    budget = convnets.n_params(convnets.build_model(cnn_cfg, side))
    mlp_size = convnets.n_params(convnets.build_model(convnets.Config(model="mlp"), side))
    assert abs(mlp_size - budget) / budget < 0.1  # same size, within 10%
    # 1,000 test images: one run's accuracy is known to about ±1%
    gain = cnn[-1]["test_acc"] - mlp[-1]["test_acc"]
    lesson.expect("digits: CNN minus same-size MLP accuracy", gain, ">", 0.03)


def test_feature_maps_follow_the_architecture():
    cfg = convnets.Config(dataset="digits8", conv_layers=3, channels=4)
    model = convnets.build_model(cfg, 8)
    maps = convnets.feature_maps(model, torch.zeros(1, 1, 8, 8))
    assert [m.shape for m in maps] == [(4, 8, 8), (8, 4, 4), (16, 2, 2)]


# ---------------------------------------------------------------- optimizers


def test_momentum_beats_sgd_on_the_ill_conditioned_quadratic():
    cfg = optimizers.SurfaceConfig(
        surface="ill_conditioned", optimizers=("sgd", "momentum"), learning_rate=0.01, steps=1000
    )
    _, final = run(optimizers.race_on_surface, cfg)
    reached = final.view["reached"]
    assert "momentum" in reached
    assert reached["momentum"] < reached.get("sgd", cfg.steps + 1)


def test_too_large_a_learning_rate_diverges_and_drops_out_of_the_race():
    cfg = optimizers.SurfaceConfig(
        surface="ill_conditioned", optimizers=("sgd", "adam"), learning_rate=0.05, steps=300
    )
    _, final = run(optimizers.race_on_surface, cfg)
    assert "sgd" in final.view["diverged"] and "adam" not in final.view["diverged"]


def test_the_race_is_light_enough_to_redraw_with_every_snapshot():
    """The race is the optimizers chapter's main picture: a line per optimizer ending at a dot
    where it stands now, under the HEAVY_BYTES a part may weigh to be sent with every snapshot,
    even for the longest race."""
    from figures import landscape
    from labs.core.frames import HEAVY_BYTES, to_json

    cfg = optimizers.SurfaceConfig(optimizers=optimizers.OPTIMIZERS, steps=3000, speed="full")
    views = [s.view for s in optimizers.race_on_surface(cfg, CPU) if s.view and "paths" in s.view]
    last = views[-1]
    fig = landscape.trajectories_figure(last["contours"], last["paths"], last["minima"])
    assert len(to_json(fig)) < HEAVY_BYTES
    lines = [t for t in fig["data"] if t.get("mode") == "lines"]
    assert [t["name"] for t in lines] == list(optimizers.OPTIMIZERS)
    (now,) = [t for t in fig["data"] if t.get("name") == "now"]
    for line, x, y in zip(lines, now["x"], now["y"], strict=True):  # each dot ends its line
        assert (float(line["x"][-1]), float(line["y"][-1])) == pytest.approx((x, y))
    go.Figure(fig)  # plotly accepts it


@pytest.mark.lesson
def test_every_optimizer_lowers_the_loss_of_the_same_net(seed, lesson):
    cfg = optimizers.Config(optimizers=optimizers.OPTIMIZERS, steps=300, learning_rate=0.03, seed=seed)
    history, final = run(optimizers.train, cfg)
    for name in optimizers.OPTIMIZERS:  # plain SGD is the slowest: about a third lower by 300 steps
        ratio = history[-1][f"{name} loss"] / history[0][f"{name} loss"]
        lesson.expect(f"optimizers: {name} loss after 300 steps / at the start", ratio, "<", 0.85)
    assert set(final.state_dict) == set(optimizers.OPTIMIZERS)


@pytest.mark.lesson
def test_the_lr_range_test_suggests_a_rate_that_trains(seed, lesson):
    _, final = run(optimizers.lr_range_test, optimizers.FinderConfig(steps=100, seed=seed))
    lr = final.view["suggested_lr"]
    assert 1e-4 < lr < 1.0
    cfg = optimizers.Config(optimizers=("adam",), learning_rate=lr, steps=200, seed=seed)
    history, _ = run(optimizers.train, cfg)
    # ten digit classes: chance is 10%
    lesson.expect("LR range test: accuracy at the suggested rate", history[-1]["adam test acc"], ">", 0.85)


def test_schedules_have_their_textbook_shapes():
    n, lr = 90, 0.1
    assert (optimizers.lr_curve("constant", lr, n) == lr).all()
    step = optimizers.lr_curve("step", lr, n)
    assert step[0] == lr and abs(step[-1] - lr / 100) < 1e-9
    cosine = optimizers.lr_curve("cosine", lr, n)
    assert cosine[0] == lr and cosine[-1] < lr * 0.01
    one_cycle = optimizers.lr_curve("one_cycle", lr, n)
    assert one_cycle.argmax() not in (0, n - 1) and abs(one_cycle.max() - lr) < 1e-3
    warm = optimizers.lr_curve("warmup", lr, n)
    assert warm[0] < lr / 5 and warm[-1] == lr


# ---------------------------------------------------------------- the pages' questions


@pytest.mark.lesson
@pytest.mark.parametrize(
    "experiment, questions, answers",
    [
        (playground.EXPERIMENT, playground.QUESTIONS, ("no", "yes")),
        (convnets.EXPERIMENT, convnets.QUESTIONS, ("no", "yes")),
        (optimizers.RACE, optimizers.QUESTIONS, ("momentum", "it diverges")),
    ],
    ids=["playground", "convnets", "optimizers"],
)
def test_each_question_is_settled_by_its_run_as_the_chapter_teaches(
    experiment, questions, answers, seed, lesson
):
    for question, expected in zip(questions, answers, strict=True):
        cfg = replace(experiment.config(), **question.settings)
        if "seed" in cfg.__dataclass_fields__:
            cfg = replace(cfg, seed=seed)
        answer, evidence = question.outcome(run_view(experiment.train, cfg, must_finish=False))
        lesson.expect(f"question: {question.prompt[:60]}…", answer, "==", expected, evidence)
