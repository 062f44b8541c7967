"""Chapter 13: texts are checked before training, the models learn (bits per character fall below
what character frequencies alone give), sampling and attribution behave."""

import dataclasses
import functools
import math
import re

import pytest

from labs import language as lab
from labs import text
from tests.runs import CPU, run_view

PROSE = "The quick brown fox jumps over the lazy dog. " * 60  # 2,700 characters


# ---------------------------------------------------------------- uploads and prompts


@pytest.mark.parametrize(
    "data, encoding, words",
    [
        (b"", "utf-8", "is empty"),
        (b"x" * (text.MAX_UPLOAD_BYTES + 1), "utf-8", "the limit is 2 MB"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 20, "utf-8", "binary"),
        (PROSE.encode() + b"caf\xe9 " + PROSE.encode(), "utf-8", "byte 0xe9 at position 2,703 (line 1)"),
        (b"short text", "utf-8", "at least 2,000"),
        (("\x07\x08" * 50 + PROSE).encode(), "utf-8", "control characters"),
        (PROSE.encode(), "ebcdic", "Unknown encoding"),
    ],
    ids=["empty", "too big", "binary", "bad utf-8", "too short", "control", "encoding"],
)
def test_a_bad_upload_is_refused_with_a_message_that_says_why(data, encoding, words):
    with pytest.raises(text.TextError, match=re.escape(words)):
        text.read_upload(data, encoding, "notes.txt")


def test_the_right_encoding_reads_the_same_bytes_and_crlf_and_a_bom_are_handled():
    latin = ("Café au lait, naïve résumé.\r\n" * 100).encode("cp1252")
    corpus = text.read_upload(latin, "cp1252")
    assert "Café" in corpus.text and "\r" not in corpus.text
    assert text.read_upload(b"\xef\xbb\xbf" + PROSE.encode()).text.startswith("The")
    assert text.read_upload(PROSE.encode("utf-16"), "utf-16").text == PROSE


def test_rare_characters_fold_into_unknown_and_ids_round_trip():
    many = "".join(chr(0x4E00 + i) for i in range(300)) + PROSE
    corpus = text.read_upload(many.encode())
    assert len(corpus.vocab) == text.MAX_VOCAB and text.UNKNOWN in corpus.vocab
    ids = corpus.encode(corpus.text)
    assert corpus.decode(ids) == corpus.text
    assert corpus.decode(corpus.encode("fox\u2603")) == "fox" + text.UNKNOWN  # unseen snowman


def test_a_typed_prompt_is_checked_against_what_the_model_can_read():
    vocab = text.read_upload(PROSE.encode()).vocab
    with pytest.raises(text.TextError, match="Type a few"):
        text.check_prompt("", vocab, 16)
    with pytest.raises(text.TextError, match="never saw 'é', 'ü'"):
        text.check_prompt("über café", vocab, 16)
    assert text.check_prompt("The quick brown fox jumps", vocab, 8) == (
        "ox jumps",
        "Only the last 8 characters fit the model's context.",
    )


def test_the_standard_library_corpora_exist_on_this_install():
    for kind in ("python", "docs"):
        corpus = text.stdlib(kind)
        assert len(corpus.text) > 100_000 and len(corpus.vocab) > 60
    assert "def " in text.stdlib("python").text
    with pytest.raises(Exception, match="Upload a .txt file first"):
        next(lab.train(dataclasses.replace(lab.Config(), corpus="upload"), CPU))


# ---------------------------------------------------------------- the lesson


@pytest.fixture(scope="module")
def default_run(seed):
    return run_view(lab.train, lab.Config(seed=seed))


@pytest.mark.lesson
def test_the_default_lstm_learns_python_well_below_letter_frequencies(default_run, lesson):
    bits = [r["val_bits_per_char"] for r in default_run.history]
    unigram = default_run.view["unigram_bits"]
    assert 3.5 < unigram < 5.5
    assert bits[0] > unigram - 0.5  # at the start it knows nothing
    lesson.expect("LSTM on Python: validation bits per char after 600 steps", bits[-1], "<", 2.9)
    lesson.expect("LSTM on Python: letter frequencies' bits − the model's", unigram - bits[-1], ">", 1.4)
    sample = default_run.view["sample"]
    assert sample["step"] == lab.Config().steps and len(sample["text"]) == lab.SAMPLE_LENGTH
    layers = default_run.layer_history[-1][1]
    assert list(layers) == ["embedding", "layer 1"] and all(v["grad_rms"] > 0 for v in layers.values())


def test_the_trained_model_expects_python_and_captum_explains_it(default_run):
    vocab = default_run.view["vocab"]
    model = lab.load_model(lab.Config(), vocab, default_run.state_dict)
    probs = lab.next_char_probs(model, vocab, "def __init__(self")
    assert math.isclose(float(probs.sum()), 1.0, rel_tol=1e-5)
    likely = {vocab[i] for i in probs.topk(3).indices.tolist()}
    assert likely & {",", ")"}, likely  # an argument list goes on or closes
    explained = lab.explain(model, vocab, "def __init__(self", int(probs.argmax()))
    assert explained["by_char"].shape == (len("def __init__(self"),)
    assert explained["delta"] < 0.05  # completeness: the sum matches the score change


@pytest.mark.lesson
def test_low_temperature_loops_and_top_1_is_greedy(default_run, lesson):
    vocab = default_run.view["vocab"]
    model = lab.load_model(lab.Config(), vocab, default_run.state_dict)
    corpus = text.Corpus("", "", vocab)
    cold = lab.generate(model, corpus, "    def ", 48, 200, 0.1, 0, seed=1)
    warm = lab.generate(model, corpus, "    def ", 48, 200, 1.0, 0, seed=1)
    more = lab.repetition(cold) - lab.repetition(warm)
    lesson.expect("samples: repetition at temperature 0.1 minus at 1.0", more, ">", 0.2)
    greedy = [lab.generate(model, corpus, "    def ", 48, 50, 1.0, 1, seed=s) for s in (1, 2)]
    assert greedy[0] == greedy[1]  # top-1 leaves nothing to chance


@pytest.mark.lesson
def test_the_transformer_learns_too(seed, lesson):
    cfg = lab.Config(model="transformer", steps=150, corpus="docs", seed=seed)
    view = run_view(lab.train, cfg)
    bits = [r["val_bits_per_char"] for r in view.history]
    lesson.expect("Transformer on docstrings: bits per char saved in 150 steps", bits[0] - bits[-1], ">", 1.5)
    assert list(view.layer_history[-1][1]) == ["embedding", "layer 1"]


def test_an_upload_is_what_the_model_learns():
    corpus = text.read_upload(("abcd" * 1000 + "\n").encode())
    cfg = dataclasses.replace(lab.Config(), corpus="upload", steps=150)
    view = run_view(functools.partial(lab.train, upload=corpus), cfg)
    assert view.view["vocab"] == "\nabcd"
    assert view.history[-1]["val_bits_per_char"] < 0.3  # a cycle of four is all but certain
    assert set(view.view["sample"]["text"]) <= set("\nabcd")


@pytest.mark.lesson
@pytest.mark.parametrize(
    "question, expected", list(zip(lab.QUESTIONS, ("under 3 bits", "it repeats itself"), strict=True))
)
def test_each_question_is_settled_by_its_run_as_the_chapter_teaches(question, expected, seed, lesson):
    view = run_view(lab.train, dataclasses.replace(lab.Config(), **question.settings, seed=seed))
    answer, evidence = question.outcome(view)
    lesson.expect(f"question: {question.prompt[:60]}…", answer, "==", expected, evidence)
