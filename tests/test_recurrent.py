"""Chapter 12: the generated tasks mean what they say, the loss falls, and the lesson holds —
at a long span the LSTM and GRU hold the marked symbol while the plain RNN stays at chance."""

import dataclasses

import numpy as np
import pytest
import torch

from labs import recurrent as lab
from labs.core.runner import RunState
from tests import runs


def run_view(cfg):
    return runs.run_view(lab.train, cfg)


@pytest.fixture(scope="module")
def memory_run():
    """The chapter's default: RNN, LSTM and GRU, marks up to 40 steps back, 300 steps."""
    return run_view(lab.Config())


def test_the_memory_target_is_the_marked_symbol_and_the_cue_is_last():
    g = torch.Generator().manual_seed(0)
    X, y, distance = lab.memory_batch(500, 30, g)
    assert X.shape == (500, 31, lab.SYMBOLS + 2)
    marked = X[..., lab.SYMBOLS].argmax(1)
    assert (X[..., lab.SYMBOLS].sum(1) == 1).all()  # exactly one mark per sequence
    assert (marked == 30 - distance).all()
    assert (X[torch.arange(500), marked, : lab.SYMBOLS].argmax(1) == y).all()
    assert (X[:, -1, lab.SYMBOLS + 1] == 1).all() and X[:, :-1, lab.SYMBOLS + 1].sum() == 0
    assert distance.min() >= 1 and distance.max() <= 30 and len(distance.unique()) > 20


def test_forecast_windows_continue_the_same_signal():
    g = torch.Generator().manual_seed(0)
    X, future, clean = lab.forecast_batch(64, 50, 10, 0.0, g)
    assert X.shape == (64, 50, 1) and future.shape == clean.shape == (64, 10)
    assert torch.allclose(future, clean)  # no noise asked, none added
    steps = (X[:, -1, 0] - future[:, 0]).abs()
    assert steps.mean() < 0.2  # the future starts where the window ends (slow sines)


def test_at_a_long_span_lstm_and_gru_remember_while_the_rnn_stays_at_chance(memory_run):
    assert memory_run.state == RunState.DONE, memory_run.message
    acc = {c: lab.final(memory_run, c, "test_acc") for c in lab.CELLS}
    assert acc["lstm"] > 0.9 and acc["gru"] > 0.9, acc
    assert acc["rnn"] < 0.4, acc  # chance is 0.25
    last_loss = {c: lab.final(memory_run, c, "train_loss") for c in lab.CELLS}
    assert last_loss["lstm"] < 0.1 and last_loss["gru"] < 0.1, last_loss
    assert last_loss["rnn"] > 0.9 * np.log(lab.SYMBOLS), last_loss  # guessing: ln 4


def test_the_rnn_gradient_fades_with_distance_and_the_gated_cells_do_not(memory_run):
    variants = memory_run.view["variants"]
    fade = {c: variants[lab.label(c)]["grad_by_step"] for c in lab.CELLS}
    ratio = {c: g[0] / g[-1] for c, g in fade.items()}  # at the mark (40 back) vs the last step
    assert ratio["rnn"] < 1e-4, ratio
    assert ratio["lstm"] > 1e-3 and ratio["gru"] > 1e-3, ratio


def test_accuracy_by_distance_is_measured_from_one_step_to_the_full_span(memory_run):
    info = memory_run.view["variants"]["LSTM"]
    assert info["spans"][0] <= 2 and info["spans"][-1] == 40
    assert len(info["acc_by_span"]) == len(info["spans"])
    assert min(info["acc_by_span"]) > 0.9
    hidden = info["hidden"]
    assert hidden.shape == (41, lab.Config().hidden)


def test_captum_puts_a_trained_lstm_answer_on_the_marked_step(memory_run):
    cfg = lab.Config()
    model = lab.load_model(cfg, "lstm", memory_run.state_dict["LSTM"])
    hits = 0
    for i in range(5):
        x, target = lab.example(cfg, i)
        labels, mark = lab.step_labels(cfg, x)
        assert labels[mark] == lab.SYMBOL_NAMES[int(target)] and labels[-1] == "?"
        explained = lab.explain(cfg, model, x, int(target))
        assert explained["ig"].shape == explained["occlusion"].shape == (41,)
        assert int(np.argmax(explained["occlusion"])) == mark  # exact per step
        hits += int(np.argmax(explained["ig"])) == mark
    assert hits >= 4  # IG's ranking survives its quadrature error


def test_forecasting_beats_repeating_the_last_value_and_bidirectional_runs():
    cfg = dataclasses.replace(lab.Config(), task="forecast", cells=("lstm",), bidirectional=True, steps=150)
    view = run_view(cfg)
    info = view.view["variants"]["LSTM"]
    mse = lab.final(view, "lstm", "test_mse")
    assert mse < 0.5 * info["persistence_mse"], (mse, info["persistence_mse"])
    assert info["forecast"]["pred"].shape == (3, cfg.horizon)
    x, _ = lab.example(cfg, 0)
    model = lab.load_model(cfg, "lstm", view.state_dict["LSTM"])
    assert lab.explain(cfg, model, x, 0)["ig"].shape == (cfg.span,)


@pytest.mark.parametrize(
    "question, expected", list(zip(lab.QUESTIONS, ("LSTM and GRU only", "all three"), strict=True))
)
def test_each_question_is_settled_by_its_run_as_the_chapter_teaches(question, expected):
    view = run_view(dataclasses.replace(lab.Config(), **question.settings))
    answer, evidence = question.outcome(view)
    assert answer == expected, (question.prompt, evidence)
    assert answer in question.options
