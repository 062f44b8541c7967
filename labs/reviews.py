"""Film reviews generated from a small grammar, for chapter 12b. The label follows the meaning:
"not bad" is positive, "hardly great" negative, "really good" positive. Every review belongs to
one slice (plain, negated, intensified), so a model can be scored on each."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

POSITIVE = ("good", "great", "excellent", "fun", "lovely", "brilliant", "moving", "clever")
NEGATIVE = ("bad", "boring", "awful", "dull", "terrible", "weak", "silly", "bland")
NEGATIONS = ("not", "never", "hardly", "not at all", "far from")
INTENSIFIERS = ("really", "very", "truly", "so", "extremely")
SUBJECTS = (
    "the film",
    "the plot",
    "the acting",
    "the music",
    "this movie",
    "the ending",
    "the cast",
    "the script",
)
VERBS = ("was", "is", "felt", "seemed")
OPENERS = ("", "", "", "honestly", "i think", "overall", "to be fair")
SLICES = ("plain", "negated", "intensified")
SLICE_SHARES = (0.4, 0.3, 0.3)
PAD, UNKNOWN = "<pad>", "<unk>"
SHOWN_DEFAULT = "the acting was not at all boring"  # the page's first typed review
MAX_TOKENS = 24  # a typed review longer than this is refused: the models saw at most 10 words


def _words(phrases) -> list[str]:
    return sorted({w for p in phrases for w in p.split()})


VOCAB = (
    PAD,
    UNKNOWN,
    *_words((*POSITIVE, *NEGATIVE, *NEGATIONS, *INTENSIFIERS, *SUBJECTS, *VERBS, *OPENERS)),
)
INDEX = {w: i for i, w in enumerate(VOCAB)}
UNKNOWN_ID = INDEX[UNKNOWN]


def role(word: str) -> str:
    """What a word does in the grammar (the colour of the word map)."""
    if word in POSITIVE:
        return "positive word"
    if word in NEGATIVE:
        return "negative word"
    if word in _words(NEGATIONS):
        return "negation"
    if word in INTENSIFIERS:
        return "intensifier"
    return "other"


@dataclass(frozen=True)
class Reviews:
    texts: list[str]
    tokens: torch.Tensor  # (n, length) word ids, PAD after the end
    lengths: torch.Tensor  # (n,)
    labels: torch.Tensor  # (n,) 1 = positive
    slices: torch.Tensor  # (n,) index into SLICES


def many_reviews(n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray, np.ndarray]:
    """n reviews, every choice drawn for all of them at once (a few ms for thousands)."""
    kinds = rng.choice(len(SLICES), n, p=SLICE_SHARES)
    positive_word = rng.integers(0, 2, n).astype(bool)
    adjective = np.where(positive_word, rng.integers(0, len(POSITIVE), n), rng.integers(0, len(NEGATIVE), n))
    negation, intensifier = rng.integers(0, len(NEGATIONS), n), rng.integers(0, len(INTENSIFIERS), n)
    opener, subject, verb = (rng.integers(0, len(words), n) for words in (OPENERS, SUBJECTS, VERBS))
    texts = []
    for i in range(n):
        modifier = ("", NEGATIONS[negation[i]], INTENSIFIERS[intensifier[i]])[kinds[i]]
        word = (POSITIVE if positive_word[i] else NEGATIVE)[adjective[i]]
        parts = (OPENERS[opener[i]], SUBJECTS[subject[i]], VERBS[verb[i]], modifier, word)
        texts.append(" ".join(p for p in parts if p))
    labels = positive_word != (kinds == 1)  # a negation flips the meaning, an intensifier keeps it
    return texts, labels.astype(np.int64), kinds.astype(np.int64)


def encode(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [[INDEX.get(w, UNKNOWN_ID) for w in t.split()] for t in texts]
    lengths = [len(i) for i in ids]
    tokens = np.zeros((len(ids), max(lengths)), dtype=np.int64)
    for row, i in enumerate(ids):
        tokens[row, : len(i)] = i
    return torch.from_numpy(tokens), torch.tensor(lengths)


@lru_cache(maxsize=8)
def reviews(n: int, seed: int, split: int = 0) -> Reviews:
    texts, labels, kinds = many_reviews(n, np.random.default_rng((seed, split, 12)))
    tokens, lengths = encode(texts)
    return Reviews(texts, tokens, lengths, torch.from_numpy(labels), torch.from_numpy(kinds))


class ReviewError(ValueError):
    """A typed review the models cannot read, with the reason in words."""


def check_review(text: str) -> tuple[str, str]:
    """The review as the models read it (lower case, words only), and a notice ("" if none).
    Empty or too long: ReviewError. Unknown words are read as <unk>, and the notice names them."""
    words = re.findall(r"[a-z']+", text.lower())
    if not words:
        raise ReviewError("Type a review: a few words such as “the plot was not bad”.")
    if len(words) > MAX_TOKENS:
        raise ReviewError(
            f"That is {len(words)} words; the models read at most {MAX_TOKENS} "
            "(they learned from reviews of 3 to 9)."
        )
    unknown = sorted({w for w in words if w not in INDEX})
    if len(unknown) == len(set(words)):
        raise ReviewError(
            "None of these words is in the models' vocabulary. They know: " + ", ".join(VOCAB[2:]) + "."
        )
    notice = ""
    if unknown:
        notice = (
            f"Not in the vocabulary, read as {UNKNOWN}: {', '.join(unknown)}. The models learned "
            f"{len(VOCAB) - 2} words from generated reviews."
        )
    return " ".join(words), notice
