"""Chapter 19: int8 dynamic quantization shrinks the Linear layers about 4× for less than a
point of accuracy but leaves a CNN's convolutions in float (static int8 takes them), the
exported models match PyTorch within the stated tolerance, pruning past a high sparsity costs
accuracy (over seeds). A drawn digit is preprocessed as MNIST's were, and without
onnx/onnxruntime the chapter says so and the rest works. Latency is the bench's."""

import io
import sys

import numpy as np
import pytest
import torch
from torch import nn

from figures.views import production as views
from labs import deploy
from labs import production as lab
from tests.runs import run_view


@pytest.fixture(scope="module")
def deployed(seed):
    return run_view(lab.train, lab.Config(seed=seed))


def row(view, variant):
    return next(r for r in view.view["table"] if r["variant"] == variant)


@pytest.mark.lesson
def test_dynamic_quantization_shrinks_the_linear_layers_about_4x_for_under_a_point(deployed, lesson):
    linear = deployed.view["linear_bytes"]
    # measured over seeds 0-2: 3.83× (401 KB → 105 KB), accuracy −0.1 to +0.1 points
    lesson.expect("Linear layers: float32 bytes / int8 bytes", linear["float32"] / linear["int8"], ">=", 3.5)
    lost = row(deployed, "float32 (eager)")["accuracy"] - row(deployed, "int8 dynamic")["accuracy"]
    lesson.expect("accuracy lost to int8", lost, "<", 0.01)


@pytest.mark.lesson
def test_the_exported_models_match_pytorch_within_the_stated_tolerance(deployed, lesson):
    diffs = deployed.view["export"]["max_diff"]
    # measured over seeds 0-2: ONNX 2.4-2.9e-6, torch.export 0
    lesson.expect("ONNX (onnxruntime): max |Δ logit|", diffs["ONNX (onnxruntime)"], "<=", deploy.TOLERANCE)
    lesson.expect("torch.export: max |Δ logit|", diffs["torch.export (.pt2)"], "<=", deploy.TOLERANCE)
    assert row(deployed, "ONNX (onnxruntime)")["max_diff"] <= deploy.TOLERANCE  # over the whole test set


@pytest.mark.lesson
def test_pruning_past_a_high_sparsity_costs_accuracy(deployed, lesson):
    sweep = dict(zip(deployed.view["sweep"]["sparsity"], deployed.view["sweep"]["accuracy"]))
    # measured over seeds 0-2: 99% pruned loses 0.54-0.62, 50% pruned −0.001 to 0.003
    lesson.expect("accuracy: unpruned − 99% pruned", sweep[0.0] - sweep[0.99], ">=", 0.3)
    lesson.expect("accuracy: unpruned − 50% pruned", sweep[0.0] - sweep[0.5], "<=", 0.02)


@pytest.mark.lesson
def test_the_questions_are_settled_as_the_chapter_teaches(seed, lesson):
    settings = {q.prompt: q.settings for q in lab.QUESTIONS}
    assert len(set(map(str, settings.values()))) == 1  # one run settles both
    view = run_view(lab.train, lab.Config(seed=seed, **lab.QUESTIONS[0].settings))
    for question, expected in zip(lab.QUESTIONS, ("about 4×", "less than 1.5× smaller"), strict=True):
        answer, evidence = question.outcome(view)
        lesson.expect(f"question: {question.prompt[:50]}…", answer, "==", expected, evidence)


def test_static_int8_takes_the_convolutions_that_dynamic_int8_leaves_in_float():
    from labs import deploy
    from labs.backbones import Backbone, Classifier

    torch.manual_seed(0)
    cnn = Classifier(Backbone(lab.CHAPTER8_CHANNELS), 10).eval()
    examples = torch.rand(16, 1, 28, 28)
    sizes = deploy.sizes_by_quantization(cnn, examples)
    # measured: 38.5 KB float32, 30.7 KB dynamic int8, 18.9 KB static int8; 33% of weights in Linear
    assert sizes["linear_share"] == pytest.approx(0.33, abs=0.02)
    assert sizes["float32"] / sizes["int8 dynamic"] < 1.5
    assert sizes["float32"] / sizes["int8 static"] > 1.8
    static = deploy.static_quantize(cnn, examples)
    assert (static(examples) - cnn(examples)).abs().max() < 0.05  # int8 all through, still the same net


def test_the_files_load_back_and_the_table_covers_every_variant(deployed):
    files = deployed.view["files"]
    program = torch.export.load(io.BytesIO(files["torch.export (.pt2)"])).module()
    model = lab.DigitNet()
    model.load_state_dict(deployed.state_dict)
    x = torch.rand(5, 1, 28, 28)  # another batch size than the export's example
    with torch.no_grad():
        assert torch.allclose(program(x), model.eval()(x), atol=deploy.TOLERANCE)
    names = [r["variant"] for r in deployed.view["table"]]
    assert names == [
        "float32 (eager)",
        "torch.export (.pt2)",
        "ONNX (onnxruntime)",
        "int8 dynamic",
        "pruned 80%",
    ]
    for r in deployed.view["table"]:
        assert r["b1_median_ms"] <= r["b1_p90_ms"] and r["b64_median_ms"] <= r["b64_p90_ms"]
    pruned = row(deployed, "pruned 80%")
    assert pruned["gzip_kb"] < 0.5 * pruned["size_kb"]  # zeros take the same room, and compress
    parts = views.VIEWS.draw(deployed)
    assert {"loss", "accuracy", "table", "latency", "sweep", "export"} <= set(parts)


def test_an_lstm_is_quantized_too():
    class Reader(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(32, 128, batch_first=True)
            self.head = nn.Linear(128, 2)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

    model = Reader().eval()
    quantized = deploy.quantize(model)
    assert isinstance(quantized.lstm, torch.ao.nn.quantized.dynamic.LSTM)
    assert len(deploy.state_bytes(model)) / len(deploy.state_bytes(quantized)) > 3
    x = torch.randn(4, 10, 32)
    with torch.no_grad():
        assert (quantized(x) - model(x)).abs().max() < 0.05


def test_pruning_zeroes_the_asked_share_of_weights():
    model = lab.DigitNet()
    for sparsity in (0.0, 0.5, 0.9):
        assert deploy.sparsity_of(deploy.pruned_copy(model, sparsity)) == pytest.approx(sparsity, abs=0.01)
    assert deploy.sparsity_of(model) < 0.01  # the original is untouched


def test_a_digit_drawn_small_in_a_corner_is_cropped_scaled_and_centred_like_mnist():
    canvas = np.zeros((112, 112), np.float32)
    canvas[5:35, 8:14] = 1.0  # a "1", small, top left
    seen = lab.preprocess(canvas)[0, 0]
    assert seen.shape == (28, 28)
    rows, cols = np.nonzero(seen.numpy() > 0.1)
    assert rows.max() - rows.min() + 1 <= 21 and rows.max() - rows.min() + 1 >= 18  # fits 20×20
    mass = seen.sum()
    centre = (
        float((torch.arange(28)[:, None] * seen).sum() / mass),
        float((torch.arange(28) * seen).sum() / mass),
    )
    assert abs(centre[0] - 14) <= 1 and abs(centre[1] - 14) <= 1
    shrunk = lab.shrink(canvas)[0, 0]
    assert float(shrunk[14:, 14:].sum()) == 0  # the naive picture keeps it small in its corner
    assert lab.preprocess(np.zeros((112, 112))) is None


def test_an_mnist_digit_preprocessed_again_is_read_the_same(deployed):
    """A training-style digit, enlarged and moved as a canvas drawing would be, comes back
    near where it was: the pipeline is the one the data went through."""
    ds = lab.digits(0)
    model = lab.DigitNet()
    model.load_state_dict(deployed.state_dict)
    model.eval()
    agree = 0
    for i in range(50):
        digit = ds.X_test[i : i + 1]
        canvas = torch.nn.functional.interpolate(digit, size=(84, 84), mode="bilinear")[0, 0].numpy()
        canvas = np.pad(canvas, ((0, 28), (28, 0)))  # off-centre on a 112 canvas
        with torch.no_grad():
            agree += int(model(lab.preprocess(canvas)).argmax() == model(digit).argmax())
    assert agree >= 45


def test_without_onnx_the_chapter_says_so_and_the_rest_works(monkeypatch):
    monkeypatch.setattr(deploy, "onnx_available", lambda: False)
    view = run_view(lab.train, lab.Config(epochs=1))
    assert deploy.ONNX_MISSING in view.notes
    names = [r["variant"] for r in view.view["table"]]
    assert "ONNX (onnxruntime)" not in names and "int8 dynamic" in names
    assert "ONNX (onnxruntime)" not in view.view["files"] and "torch.export (.pt2)" in view.view["files"]
    served = lab.served_variants(view.cfg, view.state_dict, view.view["files"])
    assert "ONNX (onnxruntime)" not in served
    answers = lab.serve(served, torch.zeros(1, 1, 28, 28))
    assert all(abs(a["probs"].sum() - 1) < 1e-4 for a in answers.values())


def test_without_onnxscript_the_older_exporter_still_makes_a_matching_onnx_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now fails
    exported = deploy.export(lab.DigitNet().eval(), torch.rand(2, 1, 28, 28))
    assert exported["onnx_error"] == ""
    assert exported["max_diff"]["ONNX (onnxruntime)"] <= deploy.TOLERANCE  # on a batch of 64: dynamic
