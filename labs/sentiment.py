"""Chapter 12b — Text classification.

Is a review positive? A bag of words adds up what each word says, wherever it stands: "good"
counts for, "bad" against, and "not" can only add the same amount either way. An LSTM reads the
words in order, so "not" can change what the next word means. Both train side by side on
reviews generated from a grammar with negations ("not bad", "hardly great", "not at all
boring") and intensifiers ("really good"), and are scored on each slice. After training, a typed
review is classified by both, with LayerIntegratedGradients on the embedding showing each
word's push: for the LSTM, "not" turns the verdict around.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients
from torch import nn
from torch.nn import functional as F

from figures.variants import metric
from labs import reviews as grammar
from labs.core import budget
from labs.core.compare import load_variants, side_by_side
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.projection import principal_plane
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy

PREFERS_GPU = False  # sentences of at most 9 words through a 32-unit LSTM: overhead-bound
VARIANTS = {"bow": "bag of words", "lstm": "LSTM"}
TEST_REVIEWS = 1500
SHOWN = grammar.SHOWN_DEFAULT  # the review whose hidden states are drawn live


@dataclass(frozen=True)
class Config:
    variants: tuple = knob(
        tuple(VARIANTS),
        "Compare",
        "A logistic model on the words' counts; an LSTM that reads them in order.",
        choices=tuple(VARIANTS),
        multi=True,
        labels=VARIANTS,
    )
    train_reviews: int = knob(
        3000, "Training reviews", "Generated once per seed.", lo=200, hi=50000, step=100
    )
    embedding: int = knob(16, "Embedding size", "Numbers per word (the LSTM's input).", lo=2, hi=128, step=2)
    hidden: int = knob(32, "LSTM units", "Size of the LSTM's memory.", lo=4, hi=256, step=4)
    learning_rate: float = knob(1e-2, "Learning rate", "Adam's step size.", lo=1e-4, hi=0.1, log=True)
    batch_size: int = knob(64, "Batch size", "Reviews per step.", lo=8, hi=512, step=8)
    steps: int = knob(400, "Steps", "For each model.", lo=20, hi=20000, step=20)
    seed: int = knob(0, "Seed", "Same seed, same reviews, same run.", lo=0, hi=9999, step=1)


# ---------------------------------------------------------------- the models


class BagOfWords(nn.Module):
    """Logistic regression on word counts: a weight per word (an embedding of size 1), summed
    over the review, plus a bias. Order cannot matter."""

    def __init__(self, vocab: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 1, padding_idx=0)
        nn.init.zeros_(self.embedding.weight)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.embedding(tokens)[..., 0].sum(1) + self.bias  # PAD's weight stays 0


class Reader(nn.Module):
    """Embedding → LSTM → the last real word's hidden state → a logit."""

    def __init__(self, vocab: int, embedding: int, hidden: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding, padding_idx=0)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def states(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lstm(self.embedding(tokens))[0]  # (n, length, hidden)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        states = self.states(tokens)
        if lengths is None:  # one review without padding (a typed one, Captum's path points)
            last = states[:, -1]
        else:
            last = states[torch.arange(len(tokens)), lengths.to(tokens.device) - 1]
        return self.out(last)[:, 0]


def build(variant: str, cfg: Config) -> nn.Module:
    vocab = len(grammar.VOCAB)
    return BagOfWords(vocab) if variant == "bow" else Reader(vocab, cfg.embedding, cfg.hidden)


def cost(cfg: Config) -> budget.Cost:
    length = 9
    lstm = 4 * cfg.hidden * (cfg.embedding + cfg.hidden + 1)
    params = len(grammar.VOCAB) * (cfg.embedding + 1) + lstm + cfg.hidden
    return budget.Cost(
        params,
        cfg.batch_size * length * (cfg.embedding + 6 * cfg.hidden),
        cfg.steps,
        6 * cfg.batch_size * length * lstm,
        12 * length,
        data=(cfg.train_reviews + TEST_REVIEWS) * 12,
        kind="recurrent",
    )


# ---------------------------------------------------------------- training


def train(cfg: Config, device: torch.device):
    check(cfg)
    yield from side_by_side({VARIANTS[v]: train_one(v, cfg, device) for v in cfg.variants}, device)


@torch.no_grad()
def slice_accuracy(model: nn.Module, data: grammar.Reviews, device: torch.device) -> dict[str, float]:
    model.eval()
    right = ((model(data.tokens.to(device), data.lengths) > 0).long().cpu() == data.labels).float()
    model.train()
    out = {"accuracy": right.mean().item()}
    for k, name in enumerate(grammar.SLICES):
        out[f"acc {name}"] = right[data.slices == k].mean().item()
    return out


def train_one(variant: str, cfg: Config, device: torch.device):
    """Adam on binary cross-entropy; each snapshot scores every slice of the test reviews and,
    for the LSTM, keeps the word map and the hidden states of one review."""
    g = seed_everything(cfg.seed)
    data, test = (
        grammar.reviews(cfg.train_reviews, cfg.seed),
        grammar.reviews(TEST_REVIEWS, cfg.seed, split=1),
    )
    tokens, lengths, labels = data.tokens.to(device), data.lengths.to(device), data.labels.float().to(device)
    model = build(variant, cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    cadence = Cadence(cfg.steps, max_snaps=80, min_seconds=0.05)  # a 1-2 s run: curves need points
    shown, _ = grammar.encode([SHOWN])
    notes = [
        f"{len(data.texts):,} generated training reviews, {TEST_REVIEWS:,} test reviews; "
        f"{len(grammar.VOCAB) - 2} words. e.g. “{data.texts[0]}”, “{data.texts[1]}”."
    ]
    legend = {  # what the word maps and slice charts are labelled with: sent once
        "vocabulary": list(grammar.VOCAB[2:]),
        "roles": [grammar.role(w) for w in grammar.VOCAB[2:]],
        "slices": list(grammar.SLICES),
    }
    step = 0
    watch = LossWatch()
    for step in steps(cfg.steps):
        b = torch.randint(0, len(labels), (cfg.batch_size,), generator=g).to(device)
        loss = F.binary_cross_entropy_with_logits(model(tokens[b], lengths[b]), labels[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log(step, train_loss=loss)
        if cadence.due(step):
            watch.check(step, loss=loss)
            view = {"words": word_map(model), **legend}
            if isinstance(model, Reader):
                with torch.no_grad():
                    view["states"] = to_numpy(model.states(shown.to(device))[0])
                view["shown"] = SHOWN
            yield Snapshot(step, cfg.steps, slice_accuracy(model, test, device), view=view, notes=notes)
            notes, legend = [], {}
    yield Snapshot(step, cfg.steps, final=True, state_dict=cpu_state_dict(model))


def word_map(model: nn.Module) -> np.ndarray:
    """Each word's embedding on its principal plane (the bag of words' one weight on the x
    axis). PAD and UNKNOWN are not words: left out."""
    return principal_plane(model.embedding.weight.detach().float().cpu().numpy()[2:])


# ---------------------------------------------------------------- after training


def load(cfg: Config, state_dicts: dict[str, dict]) -> dict[str, nn.Module]:
    return load_variants(state_dicts, VARIANTS, lambda variant: build(variant, cfg))


def classify_and_explain(model: nn.Module, text: str) -> dict:
    """P(positive) for a checked review, and each word's push on the logit by
    LayerIntegratedGradients on the embedding, from a review of PAD tokens (no words at all).
    The pushes add up to logit(review) − logit(nothing), up to the convergence delta."""
    tokens, _ = grammar.encode([text])
    with torch.no_grad():
        logit = model(tokens).item()
    lig = LayerIntegratedGradients(lambda t: model(t), model.embedding)
    attr, delta = lig.attribute(
        tokens, baselines=torch.zeros_like(tokens), n_steps=64, return_convergence_delta=True
    )
    return {
        "words": text.split(),
        "probability": 1 / (1 + math.exp(-logit)),
        "push": attr.sum(-1)[0].detach().numpy(),
        "delta": float(delta.abs().item()),
    }


# ---------------------------------------------------------------- questions


def _negated(view, variant: str) -> float:
    return view.last(metric(VARIANTS[variant], "acc negated"), 0.0) or 0.0


def _bag_on_negations(view) -> tuple[str, str]:
    acc = _negated(view, "bow")
    answer = "at or below chance (≤ 60%)" if acc <= 0.6 else "well above chance"
    return answer, f"The bag of words gets {acc:.0%} of the negated test reviews right."


def _lstm_on_negations(view) -> tuple[str, str]:
    acc = _negated(view, "lstm")
    answer = "above 90%" if acc > 0.9 else "90% or less"
    return answer, f"The LSTM gets {acc:.0%} of the negated test reviews right."


QUESTIONS = [
    Question(
        "The bag of words scores each word once, wherever it stands. On negated reviews "
        "(“not bad”, “hardly great”), how often will it be right?",
        ("at or below chance (≤ 60%)", "well above chance"),
        {"variants": ("bow",)},
        _bag_on_negations,
        "“not” comes with good and bad words alike, so its weight cannot say which way to flip; "
        "the adjective's weight wins, and on a negated review it points the wrong way.",
    ),
    Question(
        "Same reviews, read in order by an LSTM with 32 units. On the negated ones?",
        ("above 90%", "90% or less"),
        {"variants": ("lstm",)},
        _lstm_on_negations,
        "The LSTM's memory carries “a negation came” to the adjective, and the output reads the "
        "two together.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
