"""Chapter 14: the toy tasks mean what they say, attention is blind to order without a positional
encoding, and the lessons hold — no encoding, no reversal; with one, reversal; sorting needs none."""

import dataclasses

import numpy as np
import pytest
import torch

from labs import attention as lab
from labs.core.config import ConfigError
from labs.transformer import sinusoidal
from tests import runs
from tests.runs import CPU


def run_view(cfg):
    return runs.run_view(lab.train, cfg)


def test_each_task_makes_the_output_it_names():
    g = torch.Generator().manual_seed(0)
    x, y = lab.make_batch("reverse", 5, 6, g)
    assert torch.equal(y, x.flip(1))
    x, y = lab.make_batch("sort", 5, 6, g)
    assert (y[:, 1:] >= y[:, :-1]).all() and torch.equal(y.sort(1).values, x.sort(1).values)
    x, y = lab.make_batch("copy", 5, 6, g)
    assert torch.equal(x, y)
    src, y = lab.make_batch("add", 200, 3, g)
    assert src.shape == (200, 7) and (src[:, 3] == lab.PLUS).all() and y.shape == (200, 4)
    for row, out in zip(src.tolist(), y.tolist()):
        a, b = (int("".join(map(str, part))) for part in (row[:3], row[4:]))
        assert int("".join(map(str, out))) == a + b


def test_typed_inputs_are_parsed_or_refused_in_words():
    assert lab.parse_input("reverse", "3 1 4", 8).tolist() == [[3, 1, 4]]
    assert lab.parse_input("add", "12+34", 8).tolist() == [[1, 2, lab.PLUS, 3, 4]]
    assert lab.expected_output("add", lab.parse_input("add", "95+17", 8)) == ["1", "1", "2"]
    assert lab.expected_output("reverse", lab.parse_input("reverse", "123", 8)) == ["3", "2", "1"]
    for task, typed, words in [
        ("reverse", "12a", "digits only"),
        ("reverse", "", "digits only"),
        ("reverse", "1" * 13, "1 to 12 digits"),
        ("add", "12+345", "same count of digits"),
        ("add", "1234", "same count of digits"),
    ]:
        with pytest.raises(ValueError, match=words):
            lab.parse_input(task, typed, 8)


def test_without_positions_attention_cannot_tell_orders_apart():
    """Permuting the input only permutes what the encoder says: order is invisible."""
    torch.manual_seed(0)
    model = lab.build_model(dataclasses.replace(lab.Config(), positional="none")).eval()
    src = torch.tensor([[3, 1, 4, 1, 5, 9]])
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    with torch.no_grad():
        a = model.encode_embedded(model.src_embed(src))
        b = model.encode_embedded(model.src_embed(src[:, perm]))
        assert torch.allclose(a[:, perm], b, atol=1e-5)
        # the decoder therefore writes the same thing for any order of the same digits
        assert torch.equal(model.greedy(src, 6, lab.BOS), model.greedy(src[:, perm], 6, lab.BOS))


def test_heads_that_do_not_divide_the_width_are_refused_in_words():
    with pytest.raises(ConfigError, match="3 heads do not divide a width of 32"):
        next(lab.train(dataclasses.replace(lab.Config(), heads=3), CPU))


def test_sinusoidal_encodings_are_distinct_and_bounded():
    pe = sinusoidal(20, 32).numpy()
    assert pe.shape == (20, 32) and np.abs(pe).max() <= 1.0
    assert np.allclose(pe[0, 0::2], 0) and np.allclose(pe[0, 1::2], 1)
    distances = np.linalg.norm(pe[:, None] - pe[None], axis=-1) + np.eye(20)
    assert distances.min() > 0.1  # every position has its own pattern


@pytest.fixture(scope="module")
def reversal(seed):
    return run_view(lab.Config(seed=seed))  # reverse, length 8, sinusoidal


@pytest.mark.lesson
def test_with_a_positional_encoding_it_learns_to_reverse_and_looks_anti_diagonally(reversal, lesson):
    last = reversal.history[-1]
    assert last["train_loss"] < reversal.history[0]["train_loss"] / 10
    # chance of a whole sequence of 8 digits is 1e-8
    lesson.expect("reverse: whole sequences written right", last["greedy_sequence_acc"], ">", 0.6)
    cross = reversal.view["attention"]["decoder cross-attention"]
    assert cross.shape == (2, 4, 8, 8)
    # Output i reads input 7-i or a neighbour (after the encoder's self-attention, a neighbour
    # may carry the digit). Where one head does it alone varies from run to run; the heads'
    # mean is what is stable. A map with no structure puts 22/64 = 34% of its mass there.
    band = lab.anti_diagonal_band(cross[-1].mean(0))
    lesson.expect("reverse: last cross-attention's mass on the anti-diagonal band", band, ">", 0.6)
    by_length = dict(zip(reversal.view["lengths"], reversal.view["greedy_acc_by_length"]))
    # "output i = input 7-i" is reversal at length 8 only
    lesson.expect("reverse: sequences right at the trained length 8", by_length[8], ">", 0.6)
    lesson.expect("reverse: sequences right at length 4 (never trained)", by_length[4], "<", 0.3)


@pytest.mark.lesson
def test_attribution_and_attention_of_a_typed_example(reversal, lesson):
    cfg = reversal.cfg
    model = lab.load_model(cfg, reversal.state_dict)
    src = lab.parse_input("reverse", "31415926", cfg.max_length)
    written = lab.answer(model, cfg, src)
    explained = lab.explain(model, src, written)
    assert explained["attribution"].shape == explained["cross_attention"].shape == (8, 8)
    assert np.allclose(explained["cross_attention"].sum(1), 1, atol=1e-5)
    assert explained["delta"] < 0.5  # largest over the 8 outputs; score gaps here are ~10-20
    # Both maps lie along the anti-diagonal band: output i draws on input 7-i or a neighbour
    # (after the encoder's self-attention, a neighbour may carry the digit). A map with no
    # structure would put 22/64 of its mass there.
    lesson.expect(
        "31415926: IG's mass on the anti-diagonal band",
        lab.anti_diagonal_band(explained["attribution"]),
        ">",
        0.55,
    )
    lesson.expect(
        "31415926: attention's mass on the band",
        lab.anti_diagonal_band(explained["cross_attention"]),
        ">",
        0.55,
    )


@pytest.mark.lesson
@pytest.mark.parametrize(
    "question, expected",
    list(zip(lab.QUESTIONS, ("it cannot", "it learns it", "it learns it"), strict=True)),
    ids=["reverse without positions", "reverse with sinusoidal", "sort without positions"],
)
def test_each_question_is_settled_by_its_run_as_the_chapter_teaches(question, expected, seed, lesson):
    view = run_view(dataclasses.replace(lab.Config(), **question.settings, seed=seed))
    answer, evidence = question.outcome(view)
    lesson.expect(f"question: {question.prompt[:60]}…", answer, "==", expected, evidence)


def test_learned_positions_and_addition_train():
    cfg = dataclasses.replace(lab.Config(), task="add", max_length=3, positional="learned", steps=60)
    view = run_view(cfg)
    assert view.history[-1]["train_loss"] < view.history[0]["train_loss"]
    assert view.view["positions"].shape == (lab.input_length("add", 3 + lab.EXTRA), cfg.width)
    assert view.view["attention"]["decoder cross-attention"].shape == (2, 4, 4, 7)
