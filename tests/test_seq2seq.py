"""Chapter 21: numbers into words. Over seeds, the decoder with attention writes the longest
held-out numbers right far more often than the one that sees only the encoder's last state; its
alignment reads the digits left to right; the beam gets more right than greedy; Integrated
Gradients of a written word agree with its attention more often than chance. The pieces: the
words, beam search of width 1 being greedy, bad input told clearly."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from labs import number_words as nw
from labs import seq2seq as lab
from labs import seq2seq_explain as explain
from labs.core.config import ConfigError
from labs.encoder_decoder import beam_search, greedy
from tests.runs import run_view

PLAIN, ATTENTION = lab.MODELS["plain"], lab.MODELS["attention"]


@pytest.fixture(scope="module")
def trained(seed):
    return run_view(lab.train, lab.Config(seed=seed))


def test_numbers_are_said_as_english_says_them():
    assert nw.words_of(0) == ["zero"]
    assert nw.words_of(13) == ["thirteen"]
    assert nw.words_of(40) == ["forty"]
    assert nw.words_of(115) == ["one", "hundred", "fifteen"]
    assert " ".join(nw.words_of(3040516)) == "three million forty thousand five hundred sixteen"
    assert nw.words_of(1_000_000) == ["one", "million"]
    assert " ".join(nw.words_of(999_000_000_021)) == "nine hundred ninety nine billion twenty one"


@given(st.integers(0, 10**nw.MAX_DIGITS - 1))
def test_every_number_fits_its_length_s_longest_output_and_round_trips(number):
    digits = len(str(number))
    words = nw.words_of(number)
    assert len(words) + 1 <= nw.longest_output(digits)
    src, tgt = nw.encode([number], digits)
    assert "".join(map(str, src[0].tolist())) == str(number)
    assert nw.text_of(tgt[0]) == words and int(tgt[0, len(words)]) == nw.EOS


def test_a_typed_number_is_read_or_refused_with_a_reason():
    assert nw.parse_number("3,040,516", 8) == 3040516
    assert nw.parse_number(" 42 ", 2) == 42
    for typed, says in (
        ("forty", "in digits"),
        ("", "in digits"),
        ("-5", "in digits"),
        ("123456789", "9 is more"),
    ):
        with pytest.raises(ValueError, match=says):
            nw.parse_number(typed, 8)


def test_a_beam_of_one_is_greedy_and_every_beam_ends_its_outputs():
    torch.manual_seed(0)
    for kind in lab.MODELS:
        model = lab.build(kind, 32).eval()
        src, tgt = nw.make_batch(16, 5, torch.Generator().manual_seed(1))
        written, _ = greedy(model, src, tgt.shape[1])
        assert torch.equal(beam_search(model, src, tgt.shape[1], 1), written)
        beamed = beam_search(model, src, 12, 3)
        for row in beamed:  # after an end token, only padding
            ends = (row == nw.EOS).nonzero()
            if len(ends):
                assert (row[int(ends[0]) + 1 :] == nw.PAD).all()


def test_settings_that_cannot_run_are_refused_or_explained():
    with pytest.raises(ConfigError, match="choose at least one"):
        next(lab.train(lab.Config(models=()), torch.device("cpu")))
    view = run_view(lab.train, lab.Config(steps=20, max_digits=3, example=3040516, teacher=0.5))
    assert any("watching 516" in n for n in view.notes)
    assert view.view["variants"][ATTENTION]["example"]["input"] == list("516")
    both_ways = lab.Config(steps=20, encoder="both")
    view = run_view(lab.train, both_ways)
    assert set(lab.load_models(both_ways, view.state_dict)) == {PLAIN, ATTENTION}


def last(view, model: str, name: str = "longest right") -> float:
    return view.last(f"{model}: {name}")


@pytest.mark.lesson
def test_attention_writes_the_longest_numbers_right_far_more_often(trained, lesson):
    # measured over seeds 0-2: 8 digits right 52/42/59% with attention, 14/12/9% without
    lesson.expect(
        "longest numbers right, attention − last state only",
        last(trained, ATTENTION) - last(trained, PLAIN),
        ">",
        0.2,
    )
    short = [trained.view["variants"][m]["greedy_by_length"][:3] for m in (PLAIN, ATTENTION)]
    lesson.expect("numbers of 1-3 digits right, the worse model", float(np.min(short)), ">", 0.9)


@pytest.mark.lesson
def test_the_alignment_reads_the_digits_left_to_right(trained, lesson):
    # measured over seeds 0-2: 96/88/90% of steps; an alignment that jumps at random: ~50%
    lesson.expect(
        "steps whose most-attended digit does not move left",
        last(trained, ATTENTION, "alignment in order"),
        ">",
        0.75,
    )


@pytest.mark.lesson
def test_the_questions_are_settled_as_the_chapter_teaches(trained, lesson):
    expected = ("with attention", "more", "left to right, mostly")
    for question, answer_taught in zip(lab.QUESTIONS, expected, strict=True):
        assert all(
            getattr(lab.Config(), k) == v for k, v in question.settings.items()
        )  # the default run answers it
        answer, evidence = question.outcome(trained)
        lesson.expect(f"question: {question.prompt[:50]}…", answer, "==", answer_taught, evidence)


@pytest.mark.lesson
def test_attribution_and_attention_agree_on_the_digit_more_often_than_chance(trained, lesson):
    model = lab.load_models(trained.cfg, trained.state_dict)[ATTENTION]
    numbers = nw.random_numbers(6, 8, torch.Generator().manual_seed(7))
    explained = [explain.explain(model, n) for n in numbers]
    for e in explained:  # IG's completeness: the attributions add up to the score's change
        assert e["delta"] < 0.05 * np.abs(e["attribution"]).sum(1).max()
    agreement = float(np.mean([e["agreement"] for e in explained]))
    lesson.expect("words whose most-attended digit is the most attributed (chance 1/8)", agreement, ">", 0.25)
