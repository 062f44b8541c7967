"""Chapter 12b: the bag of words fails the negated reviews while the LSTM reads them (over seeds),
the LSTM's "not" flips a typed verdict, and typed input is checked."""

import numpy as np
import pytest

from figures.views import sentiment as views
from labs import reviews as grammar
from labs import sentiment as lab
from tests.runs import run_view


@pytest.fixture(scope="module")
def trained(seed):
    cfg = lab.Config(seed=seed)
    return cfg, run_view(lab.train, cfg)


def _acc(view, model, part):
    return view.last(f"{model}: acc {part}")


@pytest.mark.lesson
def test_the_bag_of_words_fails_negations_and_the_lstm_reads_them(trained, lesson):
    _, view = trained
    # measured over seeds 0-2: bag of words 0-0.4% on negated, 100% on plain and intensified;
    # the LSTM 100% on every slice
    lesson.expect(
        "bag of words: accuracy on negated reviews", _acc(view, "bag of words", "negated"), "<", 0.6
    )
    lesson.expect("bag of words: accuracy on plain reviews", _acc(view, "bag of words", "plain"), ">", 0.9)
    lesson.expect("LSTM: accuracy on negated reviews", _acc(view, "LSTM", "negated"), ">", 0.9)
    lesson.expect("LSTM: accuracy on intensified reviews", _acc(view, "LSTM", "intensified"), ">", 0.9)


@pytest.mark.lesson
def test_not_flips_the_lstms_verdict_and_its_attribution_says_so(trained, lesson):
    cfg, view = trained
    lstm = lab.load(cfg, view.state_dict)["LSTM"]
    plain, negated = (lab.classify_and_explain(lstm, t) for t in ("the film was bad", "the film was not bad"))
    lesson.expect(
        "LSTM: P(positive) of “the film was not bad” minus “… bad”",
        negated["probability"] - plain["probability"],
        ">",
        0.5,
    )
    # the pushes add up to the logit's change from an empty review: "not" carries the flip
    push_of_not = negated["push"][negated["words"].index("not")]
    lesson.expect("LSTM: IG push of “not” in “the film was not bad” (logit)", push_of_not, ">", 0.5)
    lesson.expect("LSTM: IG convergence delta", negated["delta"], "<", 0.05)


@pytest.mark.lesson
def test_the_questions_are_settled_as_the_chapter_teaches(trained, lesson):
    _, view = trained  # both variants' default runs: each question's run is one of them
    for question, expected in zip(lab.QUESTIONS, ("at or below chance (≤ 60%)", "above 90%")):
        answer, evidence = question.outcome(view)
        lesson.expect(f"question: {question.prompt[:50]}…", answer, "==", expected, evidence)


def test_labels_follow_the_meaning_and_every_slice_is_there():
    data = grammar.reviews(600, seed=5)
    assert set(data.slices.tolist()) == {0, 1, 2}
    for text, label, part in zip(data.texts, data.labels.tolist(), data.slices.tolist()):
        words = text.split()
        positive_word = words[-1] in grammar.POSITIVE
        assert label == (positive_word != (part == 1)), text
        if part == 1:
            assert any(n.split()[0] in words for n in grammar.NEGATIONS), text
    assert 0.4 < data.labels.float().mean() < 0.6


@pytest.mark.parametrize(
    "typed, why",
    [
        ("", "Type a review"),
        ("   !!! ", "Type a review"),
        ("good " * 30, "at most"),
        ("zzz qqq", "None of these words"),
    ],
)
def test_bad_typed_reviews_get_a_message(typed, why):
    with pytest.raises(grammar.ReviewError, match=why):
        grammar.check_review(typed)


def test_unknown_words_are_named_and_read_as_unknown():
    text, notice = grammar.check_review("The PLOT was not superb!")
    assert text == "the plot was not superb" and "superb" in notice
    tokens, _ = grammar.encode([text])
    assert tokens[0, -1] == grammar.INDEX[grammar.UNKNOWN]


def test_views_after_a_short_run():
    view = run_view(lab.train, lab.Config(steps=40, train_reviews=300))
    parts = views.draw(view)
    assert {"slices", "now", "loss", "words: LSTM", "words: bag of words", "states"} <= set(parts)
    assert np.asarray(parts["states"]["data"][0]["z"]).shape[1] == len(lab.SHOWN.split())
    models = lab.load(view.cfg, view.state_dict)
    explained = {n: lab.classify_and_explain(m, "really good") for n, m in models.items()}
    bow = explained["bag of words"]
    # a linear model: IG is exact, each word's push is its weight
    weights = models["bag of words"].embedding.weight[:, 0].detach().numpy()
    assert np.allclose(bow["push"], [weights[grammar.INDEX[w]] for w in ("really", "good")], atol=1e-4)
    assert len(views.pushes_figure(explained)["data"]) == 2
