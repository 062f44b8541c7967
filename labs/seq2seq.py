"""Chapter 21 — Sequence to sequence, with attention.

Numbers into words (labs/number_words.py): 3040516 → "three million forty thousand five hundred
sixteen". Side by side under one seed, the same GRU encoder–decoder twice (labs/encoder_decoder.py):
one whose decoder sees only the encoder's last state, one with additive (Bahdanau) attention.
Both see the same batches: each has one number length, drawn from 1..max_digits.

Live, for both: how many held-out numbers of each length they write entirely right (greedy,
no teacher forcing), the loss, and the attention of the chosen example as it forms. At the end,
beam search against greedy on the same held-out numbers, and how monotonic the alignment is.
After training (labs/seq2seq_explain.py): the learner types a number, both models write it, and
the attention map sits beside Integrated Gradients of each written word to the input digits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from labs import number_words as nw
from labs.core import budget
from labs.core.compare import side_by_side
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import EXPLODES, LossWatch
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy
from labs.encoder_decoder import Seq2Seq, beam_search, greedy, loss_of

PREFERS_GPU = False  # a few thousand weights, one word at a time: launch-bound on any GPU
MODELS = {"plain": "last state only", "attention": "with attention"}
ENCODERS = {"forward": "left to right", "both": "both ways"}
PROBE = 64  # held-out numbers of each length, with a seed of their own


@dataclass(frozen=True)
class Config:
    models: tuple = knob(
        tuple(MODELS),
        "Compare",
        "The decoder that sees only the encoder's last state, and the same with attention.",
        choices=tuple(MODELS),
        multi=True,
        labels=MODELS,
    )
    max_digits: int = knob(
        8, "Longest number (digits)", "Numbers of 1 to this many digits.", lo=2, hi=nw.MAX_DIGITS, step=1
    )
    example: int = knob(
        3040516,
        "Example to watch",
        "The number whose attention map forms live (its last digits, if it is longer than Longest number).",
        lo=0,
        hi=10**nw.MAX_DIGITS - 1,
        step=1,
    )
    encoder: str = knob(
        "forward",
        "Encoder reads",
        "The digits left to right only, or both ways (half of each state from each end).",
        choices=tuple(ENCODERS),
        labels=ENCODERS,
    )
    teacher: float = knob(
        1.0,
        "Teacher forcing",
        "Share of training steps' words read from the true output rather than the model's own last guess.",
        lo=0.0,
        hi=1.0,
        step=0.05,
    )
    beam: int = knob(
        4,
        "Beam width",
        "Partial outputs kept when writing the held-out numbers at the end (1: greedy).",
        lo=1,
        hi=10,
        step=1,
    )
    width: int = knob(64, "Width", "Size of the embeddings and the GRU states.", lo=16, hi=256, step=16)
    learning_rate: float = knob(
        0.01, "Learning rate", "Adam's start; it decays to 0 along a cosine.", lo=1e-4, hi=0.05, log=True
    )
    batch_size: int = knob(64, "Batch size", "Numbers per step.", lo=8, hi=512, step=8)
    steps: int = knob(1200, "Steps", "Gradient steps for each model.", lo=10, hi=20000, step=10)
    seed: int = knob(0, "Seed", "Same seed, same numbers, same start for both.", lo=0, hi=9999, step=1)


def build(kind: str, width: int, encoder: str = "forward") -> Seq2Seq:
    return Seq2Seq(
        nw.DIGITS, len(nw.WORDS), width, attention=kind == "attention", both_ways=encoder == "both"
    )


def load_models(cfg: Config, state_dicts: dict) -> dict[str, Seq2Seq]:
    """{model name: model} for each model the run trained."""
    models = {}
    for kind, name in MODELS.items():
        if name in state_dicts:
            model = build(kind, cfg.width, cfg.encoder)
            model.load_state_dict(state_dicts[name])
            models[name] = model.eval()
    return models


def cost(cfg: Config) -> budget.Cost:
    """Each model: a GRU over the digits, then a GRU cell, (attention,) and the output layer per
    word, all kept for backward; the snapshots decode every probe length."""
    w, b = cfg.width, cfg.batch_size
    src, out = cfg.max_digits, nw.longest_output(cfg.max_digits)
    gru = 2 * 3 * 3 * w * w  # input and state products of a GRU step, times three gates
    per_model = {
        "plain": (gru * (src + out) + 2 * 2 * w * len(nw.WORDS) * out, 25 * out),
        "attention": (gru * (src + out) + (2 * w * len(nw.WORDS) + 4 * w * w + 6 * src * w) * out, 40 * out),
    }
    chosen = [per_model[m] for m in cfg.models] or [per_model["plain"]]
    params = 2 * (8 * w * w + len(nw.WORDS) * 3 * w)
    return budget.Cost(
        params=params * len(chosen),
        activations=b * (src + out) * 12 * w * len(chosen),
        steps=cfg.steps,
        step_flops=3 * b * sum(f for f, _ in chosen),
        step_ops=sum(3 * ops for _, ops in chosen) + 20,
        evaluation=PROBE * cfg.beam * (out * (len(nw.WORDS) + 4 * w) + src * w),
    )


# ---------------------------------------------------------------- training


def train(cfg: Config, device: torch.device):
    """Both models side by side (labs/core/compare.py), each a run of `train_one`."""
    check(cfg)
    runs = {
        MODELS[m]: train_one(m, cfg, device, notes=_example_note(cfg) if i == 0 else [])
        for i, m in enumerate(cfg.models)
    }
    yield from side_by_side(runs, device)


def watched(cfg: Config) -> int:
    """The example whose attention forms live: the learner's, cut to its last max_digits digits
    when it is longer than any number the models train on (budget cuts can shorten them)."""
    return int(str(cfg.example)[-cfg.max_digits :])


def _example_note(cfg: Config) -> list[str]:
    if watched(cfg) == cfg.example:
        return []
    return [
        f"The example {cfg.example} has more digits than Longest number ({cfg.max_digits}): "
        f"watching {watched(cfg)} instead."
    ]


def train_one(kind: str, cfg: Config, device: torch.device, notes: list[str]):
    """Adam on fresh batches, each one number length; cross-entropy per word; gradients clipped."""
    g = seed_everything(cfg.seed)
    model = build(kind, cfg.width, cfg.encoder).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    probe = _probe(cfg, device)
    cadence = Cadence(cfg.steps, max_snaps=40, min_seconds=0.4)
    step, watch = 0, LossWatch(explode=EXPLODES)
    for step in steps(cfg.steps):  # ends early on Stop
        digits = int(torch.randint(1, cfg.max_digits + 1, (1,), generator=g))
        src, target = (t.to(device) for t in nw.make_batch(cfg.batch_size, digits, g))
        scores, _ = model(src, target, cfg.teacher, g)
        loss = loss_of(scores, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay.step()
        log(step, train_loss=loss)
        watch.see(loss=loss)
        if cadence.due(step):
            watch.check(step)
            yield _snapshot(cfg, model, step, probe, final=False, notes=notes)
            notes = []
    yield _snapshot(cfg, model, step, probe, final=True)
    yield Snapshot(step, cfg.steps, final=True, state_dict=cpu_state_dict(model))


def _probe(cfg: Config, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """PROBE held-out numbers of every length 1..max_digits (1 digit: all ten)."""
    g = torch.Generator().manual_seed(10_000 + cfg.seed)
    batches = [nw.encode(list(range(10)), 1)]
    batches += [nw.make_batch(PROBE, d, g) for d in range(2, cfg.max_digits + 1)]
    return [(src.to(device), tgt.to(device)) for src, tgt in batches]


def exact(written: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per number: every word and the end right (what follows the end is not read)."""
    longest = max(written.shape[1], target.shape[1])
    written = torch.nn.functional.pad(written, (0, longest - written.shape[1]), value=nw.PAD)
    target = torch.nn.functional.pad(target, (0, longest - target.shape[1]), value=nw.PAD)
    return (written == target).all(1)


@torch.no_grad()
def _snapshot(cfg: Config, model: Seq2Seq, step: int, probe: list, final: bool, notes=()) -> Snapshot:
    """Greedy whole-number accuracy for every length; the example written and where it looked.
    The final one adds beam search and how monotonic the alignment is."""
    model.eval()
    lengths = list(range(1, cfg.max_digits + 1))
    written = [greedy(model, src, tgt.shape[1] + 2) for src, tgt in probe]
    by_length = [exact(w, tgt).float().mean().item() for (w, _), (_, tgt) in zip(written, probe)]
    metrics = {"longest right": by_length[-1], "all right": float(np.mean(by_length))}
    example = watched(cfg)
    src, right = (t.to(probe[0][0].device) for t in nw.encode([example], len(str(example))))
    tokens, maps = greedy(model, src, right.shape[1] + 4)
    view = {
        "lengths": lengths,
        "greedy_by_length": by_length,
        "example": {
            "input": list(str(example)),
            "written": nw.text_of(tokens[0]),
            "right": nw.words_of(example),
        },
    }
    if maps is not None:
        view["attention"] = to_numpy(maps[0, : nw.written_length(tokens[0])])
    if final:
        beams = [beam_search(model, s, t.shape[1] + 2, cfg.beam) for s, t in probe]
        view["beam_by_length"] = [exact(b, t).float().mean().item() for b, (_, t) in zip(beams, probe)]
        metrics["longest right, beam"] = view["beam_by_length"][-1]
        if maps is not None:
            longest_written, longest_maps = written[-1]
            metrics["alignment in order"] = in_order(longest_maps, longest_written)
    model.train()
    return Snapshot(step, cfg.steps, metrics, view=view, notes=list(notes))


def in_order(maps: torch.Tensor, written: torch.Tensor) -> float:
    """Share of consecutive written words whose most-attended digit does not move left: 1 for an
    alignment that reads the number from left to right, about 1/2 for one that jumps at random.
    maps (B, T, S), written (B, T); the words up to each number's end token count."""
    focus = maps.argmax(-1)  # (B, T)
    steps_ok = focus[:, 1:] >= focus[:, :-1]
    live = torch.ones_like(written, dtype=torch.bool)
    for row, tokens in enumerate(written):
        live[row, nw.written_length(tokens) :] = False
    counted = live[:, 1:]
    return float(steps_ok[counted].float().mean()) if counted.any() else math.nan


# ---------------------------------------------------------------- questions


def _longest(view, kind: str, name: str = "longest right") -> float:
    return view.last(f"{MODELS[kind]}: {name}", math.nan)


def _who_writes_long_numbers(view) -> tuple[str, str]:
    plain, attention = _longest(view, "plain"), _longest(view, "attention")
    answer = (
        "with attention"
        if attention > plain + 0.1
        else "last state only"
        if plain > attention + 0.1
        else "about the same"
    )
    return (
        answer,
        f"Held-out numbers of the longest length written right: {plain:.0%} last state only, "
        f"{attention:.0%} with attention.",
    )


def _beam_against_greedy(view) -> tuple[str, str]:
    greedy_, beam = _longest(view, "attention"), _longest(view, "attention", "longest right, beam")
    answer = "more" if beam > greedy_ + 0.02 else "fewer" if beam < greedy_ - 0.02 else "about as many"
    return answer, f"With attention, longest numbers right: {greedy_:.0%} greedy, {beam:.0%} with the beam."


def _reads_in_order(view) -> tuple[str, str]:
    share = _longest(view, "attention", "alignment in order")
    answer = "left to right, mostly" if share > 0.75 else "all over the number"
    return (
        answer,
        f"{share:.0%} of the steps from one word to the next look at the same digit or one further right.",
    )


QUESTIONS = [
    Question(
        "Held-out numbers of 8 digits: which model writes more of them right?",
        ("with attention", "last state only", "about the same"),
        {"models": tuple(MODELS), "max_digits": 8},
        _who_writes_long_numbers,
        "The plain decoder has one vector of 64 numbers for the whole input, written once and read "
        "at every word; the longer the number, the more it must squeeze in. With attention the "
        "decoder reads the digit it needs when it needs it, whatever the length.",
    ),
    Question(
        "At the end, the held-out numbers are written again with a beam of 4 partial outputs "
        "instead of the single most likely word each time. Does the model with attention get more "
        "of the longest ones right, fewer, or about as many?",
        ("more", "fewer", "about as many"),
        {"models": tuple(MODELS), "beam": 4},
        _beam_against_greedy,
        'Greedy commits to each word for good; one early slip ("thirty" for "thirteen") '
        "sends the rest astray. The beam keeps the runners-up, so an output that starts a little "
        "less likely but goes on much better can still win.",
    ),
    Question(
        "As it writes the words one by one, where does the model with attention look: along the "
        "digits left to right, or all over the number?",
        ("left to right, mostly", "all over the number"),
        {"models": tuple(MODELS)},
        _reads_in_order,
        "English says a number in the order it is written, so the alignment is nearly monotonic; "
        "the scale words (thousand, million) look at the digit that ends their group. Nobody "
        "told the model: the alignment is learned from the words alone.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
