"""Chapter 14 — Attention & Transformers.

A tiny Transformer encoder-decoder (labs/transformer.py) learns a toy sequence task — copy,
reverse, sort, or add two numbers — on lengths 2..max_length drawn afresh for every batch.
Snapshots carry greedy-decoding accuracy by length (including lengths it never trained on),
every attention map for one fixed example, and the positional encodings themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients

from labs.core import budget
from labs.core.attribution import evaluating
from labs.core.config import ConfigError, check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import EXPLODES, LossWatch
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy
from labs.transformer import TinyTransformer, cross_entropy

PREFERS_GPU = False  # a few thousand weights on sequences of ten: overhead-bound on any GPU
TASKS = {"reverse": "reverse", "copy": "copy", "sort": "sort", "add": "add two numbers"}
POSITIONAL = {"sinusoidal": "sinusoidal", "learned": "learned", "none": "none"}
DIGITS, PLUS, BOS = 10, 10, 11  # tokens 0-9 are digits
VOCAB = 12
EXTRA = 4  # accuracy is also measured on lengths up to max_length + EXTRA, never trained on
PROBE = 128
# Sequences of each length a live snapshot scores (the final snapshot scores all PROBE): half the
# probe halves a snapshot's cost (~60 ms on 2 cores, a fifth of a second of training) and keeps
# the accuracy-by-length curve within a few points of the whole probe's.
LIVE_PROBE = 64


@dataclass(frozen=True)
class Config:
    task: str = knob("reverse", "Task", "What the output must be.", choices=tuple(TASKS), labels=TASKS)
    max_length: int = knob(
        8,
        "Longest training sequence",
        "Lengths 2..this in training (add: digits per number).",
        lo=3,
        hi=16,
        step=1,
    )
    lengths: str = knob(
        "longest",
        "Train on",
        "Only the longest length, or every length from 2 up (slower to learn, generalizes across lengths).",
        choices=("longest", "all"),
        labels={"longest": "the longest length only", "all": "every length from 2"},
    )
    positional: str = knob(
        "sinusoidal",
        "Positional encoding",
        "How the model can tell positions apart.",
        choices=tuple(POSITIONAL),
    )
    heads: int = knob(4, "Heads", "Attention heads per layer (must divide the width).", lo=1, hi=8, step=1)
    layers: int = knob(2, "Layers", "Encoder layers, and as many decoder layers.", lo=1, hi=4, step=1)
    width: int = knob(32, "Model width", "Size of every token's vector.", lo=16, hi=256, step=16)
    learning_rate: float = knob(
        0.005, "Learning rate", "Adam; gradients clipped to norm 1.", lo=1e-4, hi=0.03, log=True
    )
    batch_size: int = knob(64, "Batch size", "Sequences per step.", lo=8, hi=512, step=8)
    steps: int = knob(600, "Steps", "Gradient steps.", lo=10, hi=10000, step=10)
    seed: int = knob(0, "Seed", "Same seed, same sequences, same run.", lo=0, hi=9999, step=1)


# ---- the tasks -----------------------------------------------------------------------------


def make_batch(task: str, n: int, length: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(input tokens, output digits) for n sequences of one length (add: `length` digits each)."""
    if task == "add":
        a, b = torch.randint(0, DIGITS, (2, n, length), generator=g)
        src = torch.cat([a, torch.full((n, 1), PLUS), b], dim=1)
        return src, _digits(_number(a) + _number(b), length + 1)
    x = torch.randint(0, DIGITS, (n, length), generator=g)
    out = {"copy": x, "reverse": x.flip(1), "sort": x.sort(1).values}[task]
    return x, out


def _number(digits: torch.Tensor) -> torch.Tensor:
    powers = 10 ** torch.arange(digits.shape[1] - 1, -1, -1)
    return (digits * powers).sum(1)


def _digits(numbers: torch.Tensor, width: int) -> torch.Tensor:
    powers = 10 ** torch.arange(width - 1, -1, -1)
    return (numbers[:, None] // powers) % 10


def input_length(task: str, length: int) -> int:
    return 2 * length + 1 if task == "add" else length


def parse_input(task: str, typed: str, max_length: int) -> torch.Tensor:
    """A learner's typed example as tokens, or a ValueError that says what to type."""
    typed = typed.replace(" ", "")
    if task == "add":
        a, plus, b = typed.partition("+")
        if not plus or not _ascii_digits(a) or not _ascii_digits(b) or len(a) != len(b):
            raise ValueError(
                "Type two numbers with the same count of digits, like 352+719 (pad with zeros: 052+719)."
            )
        digits = a + b
        length = len(a)
    else:
        if not _ascii_digits(typed):
            raise ValueError("Type digits only (0 to 9), like 3141592.")
        digits, length = typed, len(typed)
    if not 1 <= length <= max_length + EXTRA:
        raise ValueError(f"Use 1 to {max_length + EXTRA} digits{' per number' if task == 'add' else ''}.")
    tokens = [int(c) for c in digits]
    if task == "add":
        tokens = tokens[:length] + [PLUS] + tokens[length:]
    return torch.tensor([tokens])


def _ascii_digits(text: str) -> bool:
    """0-9 only: str.isdigit() also accepts '²' and '①', which int() then refuses."""
    return bool(text) and all("0" <= c <= "9" for c in text)


def expected_output(task: str, src: torch.Tensor) -> list[str]:
    """The right answer for one parsed input, as text tokens."""
    if task == "add":
        n = (src.shape[1] - 1) // 2
        return token_text(_digits(_number(src[:, :n]) + _number(src[:, n + 1 :]), n + 1)[0].tolist())
    x = src[0]
    return token_text({"copy": x, "reverse": x.flip(0), "sort": x.sort().values}[task].tolist())


def token_text(tokens) -> list[str]:
    return ["+" if t == PLUS else str(int(t)) for t in tokens]


# ---- training ------------------------------------------------------------------------------


def build_model(cfg: Config) -> TinyTransformer:
    longest = input_length(cfg.task, cfg.max_length + EXTRA) + 1
    return TinyTransformer(VOCAB, DIGITS, cfg.width, cfg.heads, cfg.layers, cfg.positional, longest)


def cost(cfg: Config) -> budget.Cost:
    """Encoder tokens pass through N encoder layers, output tokens through N decoder layers,
    each keeping its inputs, attention outputs and feed-forward activations for backward."""
    w, n, b = cfg.width, cfg.layers, cfg.batch_size
    src = input_length(cfg.task, cfg.max_length)
    out = cfg.max_length + (1 if cfg.task == "add" else 0)
    encoder_flops = src * (2 * 8 * w * w + 4 * src * w)
    decoder_flops = out * (2 * 12 * w * w + 4 * (out + src) * w + 2 * w * DIGITS)
    probe_tokens = PROBE * sum(input_length(cfg.task, k) + k for k in range(2, cfg.max_length + EXTRA + 1))
    return budget.Cost(
        params=2 * VOCAB * w + n * 20 * w * w + w * DIGITS,
        activations=b * n * (src * 14 * w + out * 22 * w),
        steps=cfg.steps,
        step_flops=3 * b * n * (encoder_flops + decoder_flops),
        step_ops=40 + n * 110,
        evaluation=probe_tokens * 6 * w / (cfg.max_length + EXTRA),  # one probe length at a time
    )


def load_model(cfg: Config, state_dict: dict) -> TinyTransformer:
    model = build_model(cfg)
    model.load_state_dict(state_dict)
    return model.eval()


def teacher_input(target: torch.Tensor) -> torch.Tensor:
    """The decoder reads BOS and then the true outputs so far (teacher forcing)."""
    return torch.cat([torch.full_like(target[:, :1], BOS), target[:, :-1]], dim=1)


def trained_lengths(cfg: Config) -> tuple[int, int]:
    """The shortest and longest sequence lengths the model trains on (the rest of the probe
    range is never seen in training)."""
    return (2 if cfg.lengths == "all" else cfg.max_length), cfg.max_length


def train(cfg: Config, device: torch.device):
    """Adam on fresh batches; each batch has one length drawn from the trained lengths."""
    check(cfg)
    if cfg.width % cfg.heads:
        raise ConfigError(f"{cfg.heads} heads do not divide a width of {cfg.width}; pick a divisor.")
    g = seed_everything(cfg.seed)
    model = build_model(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, foreach=True)
    probe = _probe(cfg, device)
    cadence = Cadence(cfg.steps, max_snaps=20, min_seconds=1.0)
    shortest, longest = trained_lengths(cfg)
    step, watch = 0, LossWatch(explode=EXPLODES)
    for step in steps(cfg.steps):  # ends early on Stop
        length = int(torch.randint(shortest, longest + 1, (1,), generator=g))
        src, target = (t.to(device) for t in make_batch(cfg.task, cfg.batch_size, length, g))
        loss = cross_entropy(model(src, teacher_input(target)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log(step, train_loss=loss)
        watch.see(loss=loss)
        if cadence.due(step):
            watch.check(step)
            yield _snapshot(cfg, model, step, loss.item(), probe)
    yield Snapshot(step, cfg.steps, final=True, state_dict=cpu_state_dict(model))


def _probe(cfg: Config, device: torch.device) -> dict:
    """Fixed test sequences of every length from 2 to max_length + EXTRA (their own seed)."""
    g = torch.Generator().manual_seed(10_000 + cfg.seed)
    lengths = list(range(2, cfg.max_length + EXTRA + 1))
    batches = [tuple(t.to(device) for t in make_batch(cfg.task, PROBE, n, g)) for n in lengths]
    return {"lengths": lengths, "batches": batches}


def evaluate(model: TinyTransformer, src: torch.Tensor, target: torch.Tensor, greedy: bool = False):
    """(token accuracy, whole-sequence accuracy). Live: under teacher forcing, one pass (each
    position is given the true earlier outputs). greedy=True: the model writes the whole output
    itself, L passes, as it would in use; the final snapshot reports that."""
    if greedy:
        written = model.greedy(src, target.shape[1], BOS)
    else:
        written = model(src, teacher_input(target)).argmax(-1)
    right = written == target
    return right.float().mean().item(), right.all(1).float().mean().item()


@torch.no_grad()
def _snapshot(cfg: Config, model: TinyTransformer, step: int, loss: float, probe: dict) -> Snapshot:
    model.eval()
    last = step == cfg.steps
    watched = PROBE if last else LIVE_PROBE
    scores = [evaluate(model, src[:watched], tgt[:watched]) for src, tgt in probe["batches"]]
    shortest, longest = trained_lengths(cfg)
    trained = [s for n, s in zip(probe["lengths"], scores) if shortest <= n <= longest]
    src, tgt = probe["batches"][cfg.max_length - 2]  # the longest trained length
    maps = attention_maps(model, src[:1], tgt[:1])
    metrics = {
        "train_loss": loss,
        "token_acc": float(np.mean([t for t, _ in trained])),
        "sequence_acc": float(np.mean([s for _, s in trained])),
    }
    view = {
        "lengths": probe["lengths"],
        "trained_lengths": (shortest, longest),
        "acc_by_length": [s for _, s in scores],
        "attention": maps,
        "example": {"input": token_text(src[0].tolist()), "output": token_text(tgt[0].tolist())},
        "positions": to_numpy(model.positions(input_length(cfg.task, cfg.max_length + EXTRA))),
    }
    if last:  # written by the model itself, token after token
        greedy = [evaluate(model, s, t, greedy=True) for s, t in probe["batches"]]
        view["greedy_acc_by_length"] = [s for _, s in greedy]
        metrics["greedy_sequence_acc"] = float(
            np.mean([s for n, (_, s) in zip(probe["lengths"], greedy) if shortest <= n <= longest])
        )
    model.train()
    return Snapshot(step, cfg.steps, metrics, view=view)


@torch.no_grad()
def attention_maps(model: TinyTransformer, src: torch.Tensor, target: torch.Tensor) -> dict:
    """Every attention map for one example under teacher forcing: {kind: array (layers, heads, q, k)}."""
    model.record_attention(True)
    try:
        model(src, teacher_input(target))
        return {
            kind: np.stack([to_numpy(a.weights[0]) for a in group])
            for kind, group in model.attention_layers().items()
        }
    finally:
        model.record_attention(False)


# ---- after training: one example, explained -------------------------------------------------


def answer(model: TinyTransformer, cfg: Config, src: torch.Tensor) -> torch.Tensor:
    """The model's greedy output for one input (add: one more digit than each number has)."""
    out_len = (src.shape[1] - 1) // 2 + 1 if cfg.task == "add" else src.shape[1]
    return model.greedy(src, out_len, BOS)


def explain(model: TinyTransformer, src: torch.Tensor, written: torch.Tensor) -> dict:
    """For each output position j: Integrated Gradients of the score of the token written there,
    with respect to the input tokens' embeddings (baseline: all-zero embeddings, i.e. only the
    positional encoding left), summed over the embedding. Beside it, the last layer's
    cross-attention averaged over heads: what the decoder looked at, which is not the same thing
    as what its answer depended on."""
    tgt_in = teacher_input(written)
    with evaluating(model):
        embedded = model.src_embed(src).detach()
        rows, deltas = [], []
        for j in range(written.shape[1]):
            ig = IntegratedGradients(  # IG batches its path points: the decoder input must follow
                lambda e, j=j: model.decode(model.encode_embedded(e), tgt_in.expand(len(e), -1))[:, j]
            )
            attr, delta = ig.attribute(
                embedded,
                baselines=0 * embedded,
                target=int(written[0, j]),
                n_steps=128,
                return_convergence_delta=True,
            )
            rows.append(to_numpy(attr[0].sum(-1)))
            deltas.append(float(delta.abs().max()))
        maps = attention_maps(model, src, written)
    return {
        "attribution": np.stack(rows),  # (outputs, inputs)
        "cross_attention": maps["decoder cross-attention"][-1].mean(0),
        "delta": max(deltas),
        "maps": maps,
    }


def anti_diagonal_band(weights: np.ndarray) -> float:
    """Share of a square (outputs × inputs) map's mass where output i meets input n-1-i or a
    neighbour of it: reversal's pattern. A map with no structure puts (3n-2)/n² there."""
    m = np.abs(np.asarray(weights, dtype=np.float64))
    n = len(m)
    band = np.abs(np.arange(n)[None, :] - (n - 1 - np.arange(n))[:, None]) <= 1  # (outputs, inputs)
    return float(m[band].sum() / max(m.sum(), 1e-12))


# ---- what the runs say ---------------------------------------------------------------------


def _learns(view) -> tuple[str, str]:
    acc, token = view.last("greedy_sequence_acc", 0.0), view.last("token_acc", 0.0)
    verdict = "it learns it" if acc > 0.5 else "it cannot"
    return (
        verdict,
        f"Whole sequences written right: {acc:.0%} (digits right under teacher forcing: {token:.0%}).",
    )


QUESTIONS = [
    Question(
        "No positional encoding at all: can the Transformer learn to reverse a sequence?",
        ("it learns it", "it cannot"),
        {"task": "reverse", "positional": "none"},
        _learns,
        "Attention compares every token with every other by content alone: without positions, "
        "the encoder sees 3 1 4 and 4 1 3 as the same bag of tokens, so nothing tells it which "
        "digit came last.",
    ),
    Question(
        "Same, with sinusoidal positional encoding: can it reverse now?",
        ("it learns it", "it cannot"),
        {"task": "reverse", "positional": "sinusoidal"},
        _learns,
        "Each position adds its own vector to the token. Output position i can then look for "
        "input position n-1-i: the anti-diagonal in the cross-attention map.",
    ),
    Question(
        "No positional encoding, but the task is sorting. Can it learn that?",
        ("it learns it", "it cannot"),
        {"task": "sort", "positional": "none"},
        _learns,
        "Sorting needs only which digits there are, not where they were: the bag of tokens is "
        "enough. The decoder still knows how far it has written, because its causal "
        "self-attention can count.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
