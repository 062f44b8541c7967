"""Chapter 13 — Language models.

A character-level model (an LSTM or a small causal Transformer) learns to predict the next
character of a text: this Python's own standard library (source or docstrings) or the learner's
upload (labs/text.py checks it). Snapshots carry the loss in bits per character, every
layer's statistics and a sample written by the model as it is now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from captum.attr import LayerIntegratedGradients
from torch import nn

from labs import text
from labs.core import budget
from labs.core.attribution import evaluating
from labs.core.config import ConfigError, check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import EXPLODES, LossWatch
from labs.core.hooks import activation_stats, dead_fraction
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict
from labs.text import Corpus, stdlib

PREFERS_GPU = True
MODELS = {"lstm": "LSTM", "transformer": "Transformer"}
CORPORA = {"python": "Python stdlib source", "docs": "Python stdlib docstrings", "upload": "my .txt upload"}
SAMPLE_LENGTH = 160
VALIDATION_BATCHES = 4


@dataclass(frozen=True)
class Config:
    corpus: str = knob("python", "Text", "What the model reads.", choices=tuple(CORPORA), labels=CORPORA)
    model: str = knob("lstm", "Model", "Recurrent or attention-based.", choices=tuple(MODELS), labels=MODELS)
    width: int = knob(64, "Width", "LSTM state / Transformer model width.", lo=16, hi=512, step=16)
    layers: int = knob(1, "Layers", "Stacked LSTM layers or Transformer blocks.", lo=1, hi=4, step=1)
    context: int = knob(
        64, "Context length", "Characters the model reads before predicting.", lo=8, hi=256, step=8
    )
    learning_rate: float = knob(
        0.003, "Learning rate", "Adam; gradients clipped to norm 1.", lo=1e-4, hi=0.03, log=True
    )
    batch_size: int = knob(32, "Batch size", "Windows of text per step.", lo=4, hi=256, step=4)
    steps: int = knob(600, "Steps", "Gradient steps.", lo=10, hi=20000, step=10)
    temperature: float = knob(
        0.8, "Temperature", "Samples: below 1 plays safe, above 1 takes risks.", lo=0.1, hi=2.0, step=0.1
    )
    top_k: int = knob(
        0, "Top-k", "Samples: choose among the k likeliest characters (0 = all).", lo=0, hi=50, step=1
    )
    seed: int = knob(0, "Seed", "Same seed, same windows, same run.", lo=0, hi=9999, step=1)


# ---- the two models ------------------------------------------------------------------------


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, width: int, layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(nn.LSTM(width, width, batch_first=True) for _ in range(layers))
        self.head = nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        """Next-character logits at every position; `keep` collects each layer's output."""
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)[0]
            if keep is not None:
                keep.append(x)
        return self.head(x)


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: causal self-attention, then an MLP, each added back."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # no peeking ahead
        x = x + self.proj(attended.transpose(1, 2).reshape(n, t, d))
        return x + self.mlp(self.norm2(x))


class CharTransformer(nn.Module):
    def __init__(self, vocab: int, width: int, layers: int, context: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, max(1, width // 32)) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        x = self.embed(ids) + self.position(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
            if keep is not None:
                keep.append(x)
        return self.head(self.norm(x))


def build_model(cfg: Config, vocab_size: int) -> nn.Module:
    if cfg.model == "lstm":
        return CharLSTM(vocab_size, cfg.width, cfg.layers)
    return CharTransformer(vocab_size, cfg.width, cfg.layers, cfg.context)


CORPUS_CHARS = {"python": 720_000, "docs": 190_000, "upload": 2_000_000}  # at most


def cost(cfg: Config) -> budget.Cost:
    """Weights, and what each layer keeps per character of the batch for backward."""
    vocab, w, n, tokens = text.MAX_VOCAB, cfg.width, cfg.layers, cfg.batch_size * cfg.context
    if cfg.model == "lstm":
        layer_params, layer_flops, per_token = 8 * w * w + 8 * w, 2 * 8 * w * w, 8 * w
        ops = 30 + n * cfg.context * 30  # the cell steps through the context one character at a time
    else:  # attention reads every earlier position: its cost grows with the context
        layer_params, per_token = 12 * w * w + 13 * w, 18 * w
        layer_flops = 2 * 12 * w * w + 4 * cfg.context * w
        ops = 30 + n * 45
    head_flops = 2 * w * vocab
    return budget.Cost(
        params=vocab * w + n * layer_params + w * vocab + cfg.context * w,
        activations=tokens * (n * per_token + w + 3 * vocab),
        steps=cfg.steps,
        step_flops=3 * tokens * (n * layer_flops + head_flops),
        step_ops=ops,
        data=2 * CORPUS_CHARS[cfg.corpus],  # int64 ids
        evaluation=tokens * (4 * w + 2 * vocab),  # one validation batch, no gradients
        # "dense" for the LSTM too: its batch × context tokens make products as large as the
        # matmul probe's (bench.budget: 1.3× the measured step at the dense rate, 2.4× at the
        # recurrent probe's)
    )


def load_model(cfg: Config, vocab: str, state_dict: dict) -> nn.Module:
    model = build_model(cfg, len(vocab))
    model.load_state_dict(state_dict)
    return model.eval()


# ---- training ------------------------------------------------------------------------------


def corpus_for(cfg: Config, upload: Corpus | None) -> Corpus:
    if cfg.corpus == "upload":
        if upload is None:
            raise ConfigError("Upload a .txt file first (or choose one of the standard-library texts).")
        return upload
    return stdlib(cfg.corpus)


def train(cfg: Config, device: torch.device, upload: Corpus | None = None):
    """Adam on random windows of the text; every snapshot writes a sample at cfg.temperature."""
    check(cfg)
    corpus = corpus_for(cfg, upload)
    g = seed_everything(cfg.seed)
    ids = corpus.ids.to(device)
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]
    val_starts = torch.linspace(0, len(val_ids) - cfg.context - 2, VALIDATION_BATCHES * cfg.batch_size).long()
    model = build_model(cfg, len(corpus.vocab)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    cadence = Cadence(cfg.steps, max_snaps=12, min_seconds=1.0)
    prompt = _sample_prompt(corpus.decode(val_ids[:200]))
    reference = {"vocab": corpus.vocab, "unigram_bits": unigram_bits(train_ids)}
    step, watch = 0, LossWatch(explode=EXPLODES)
    for step in steps(cfg.steps):  # ends early on Stop
        starts = torch.randint(0, len(train_ids) - cfg.context - 1, (cfg.batch_size,), generator=g)
        x, y = windows(train_ids, starts.to(device), cfg.context)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log(step, train_loss=loss)
        watch.see(loss=loss)
        if cadence.due(step):
            watch.check(step)
            snap = _snapshot(cfg, model, corpus, step, loss.item(), (x, y), val_ids, val_starts, prompt)
            snap.view.update(reference)
            yield snap
    yield Snapshot(
        step, cfg.steps, final=True, state_dict=cpu_state_dict(model), view={"vocab": corpus.vocab}
    )


def unigram_bits(ids: torch.Tensor) -> float:
    """Bits per character of a model that knows only how often each character occurs: the
    number a language model has to beat by reading context."""
    p = torch.bincount(ids).float()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log2()).sum())


def windows(ids: torch.Tensor, starts: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ids[s : s+context] and targets shifted by one, for every start s (on the device)."""
    index = starts[:, None] + torch.arange(context + 1, device=ids.device)
    chunk = ids[index]
    return chunk[:, :-1], chunk[:, 1:]


def _sample_prompt(text: str) -> str:
    """Samples start from the beginning of a validation line: text the model has not seen."""
    start = text.find("\n") + 1
    return text[start : start + 12] or text[:12]


@torch.no_grad()
def _snapshot(cfg, model, corpus, step, loss, batch, val_ids, val_starts, prompt) -> Snapshot:
    model.eval()
    val_losses = []
    for chunk in val_starts.to(val_ids.device).split(cfg.batch_size):
        x, y = windows(val_ids, chunk, cfg.context)
        val_losses.append(F.cross_entropy(model(x).flatten(0, 1), y.flatten()))
    val_loss = torch.stack(val_losses).mean().item()
    layers = _layer_stats(model, batch[0])
    length = SAMPLE_LENGTH if step > 1 else 40  # the first live update should not wait for prose
    sample = generate(model, corpus, prompt, cfg.context, length, cfg.temperature, cfg.top_k, seed=step)
    model.train()
    metrics = {
        "train_loss": loss,
        "val_loss": val_loss,
        "train_bits_per_char": loss / math.log(2),
        "val_bits_per_char": val_loss / math.log(2),
    }
    view = {"sample": {"step": step, "prompt": prompt, "text": sample}}
    return Snapshot(step, cfg.steps, metrics, layers, view=view)


def _layer_stats(model: nn.Module, x: torch.Tensor) -> dict:
    """Each layer's output spread and dead share, and the RMS gradient of its weights (from the
    step just taken)."""
    keep: list = []
    model(x, keep)
    named = [("embedding", model.embed, model.embed(x))] + [
        (f"layer {i + 1}", block, out) for i, (block, out) in enumerate(zip(model.blocks, keep))
    ]
    stats = {}
    for name, module, out in named:
        flat = out.flatten(0, 1)
        entry = activation_stats(flat, (-3.0, 3.0))
        grads = [p.grad.flatten() for p in module.parameters() if p.grad is not None]
        g = torch.cat(grads) if grads else torch.zeros(1)
        entry.update(
            dead=dead_fraction(flat), grad_norm=float(g.norm()), grad_rms=float(g.norm() / g.numel() ** 0.5)
        )
        stats[name] = entry
    return stats


# ---- using the trained model ---------------------------------------------------------------


@torch.no_grad()
def next_char_probs(model: nn.Module, corpus_vocab: str, prompt: str) -> torch.Tensor:
    """P(next character | prompt) over the vocabulary."""
    ids = Corpus("", "", corpus_vocab).encode(prompt)[None].to(_device(model))
    with evaluating(model):
        return torch.softmax(model(ids)[0, -1].float(), -1).cpu()


@torch.no_grad()
def generate(
    model, corpus, prompt: str, context: int, length: int, temperature: float, top_k: int, seed: int = 0
):
    """Sample `length` characters after `prompt`, one at a time, from the last `context` ones."""
    g = torch.Generator().manual_seed(seed)
    ids = corpus.encode(prompt).tolist()
    with evaluating(model):
        for _ in range(length):
            x = torch.tensor([ids[-context:]], device=_device(model))
            logits = model(x)[0, -1].float().cpu() / max(temperature, 1e-3)
            if 0 < top_k < len(logits):
                logits[logits < logits.topk(top_k).values[-1]] = -math.inf
            ids.append(int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g)))
    return corpus.decode(ids[len(prompt) :])


def explain(model: nn.Module, corpus_vocab: str, prompt: str, target: int) -> dict:
    """LayerIntegratedGradients on the embedding: how much each character of the prompt pushed
    the score of `target` as the next character, against a prompt of spaces (or the first
    character of the vocabulary), summed over the embedding's dimensions."""
    encode = Corpus("", "", corpus_vocab).encode
    ids = encode(prompt)[None].to(_device(model))
    blank = " " if " " in corpus_vocab else corpus_vocab[0]
    baseline = encode(blank * len(prompt))[None].to(ids.device)
    with evaluating(model):
        lig = LayerIntegratedGradients(lambda i: model(i)[:, -1], model.embed)
        with torch.backends.cudnn.flags(enabled=False):  # cuDNN RNN backward refuses eval mode
            attr, delta = lig.attribute(
                ids, baselines=baseline, target=target, n_steps=64, return_convergence_delta=True
            )
    return {"by_char": attr[0].sum(-1).detach().cpu().numpy(), "delta": float(delta.abs().max())}


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ---- what the runs say ---------------------------------------------------------------------


def _bits(view) -> tuple[str, str]:
    bits, unigram = view.last("val_bits_per_char", math.nan), view.view.get("unigram_bits", math.nan)
    answer = "under 3 bits" if bits < 3 else ("3 to 5 bits" if bits <= 5 else "over 5 bits")
    return answer, (
        f"Validation: {bits:.2f} bits per character. Knowing only how often each character occurs "
        f"gives {unigram:.2f}; spelling one of {len(view.view.get('vocab', ''))} characters blindly, "
        f"{math.log2(max(len(view.view.get('vocab', '')), 2)):.1f}."
    )


def repetition(text: str, n: int = 8) -> float:
    """Share of the sample's n-character pieces that already occurred earlier in it."""
    pieces = [text[i : i + n] for i in range(len(text) - n + 1)]
    return 1 - len(set(pieces)) / max(len(pieces), 1)


def _loops(view) -> tuple[str, str]:
    sample = view.view.get("sample", {}).get("text", "")
    share = repetition(sample)
    answer = "it repeats itself" if share > 0.3 else "it keeps varying"
    return answer, f"{share:.0%} of its 8-character pieces had appeared before in the same sample."


QUESTIONS = [
    Question(
        "An LSTM reads Python source for 600 steps. How many bits will it need per character of "
        "code it has not seen?",
        ("over 5 bits", "3 to 5 bits", "under 3 bits"),
        {"corpus": "python", "model": "lstm", "steps": 600},
        _bits,
        "Seven bits would spell any of the 128 characters blindly, and knowing only the characters' "
        "frequencies saves about two. Code is predictable from context: indentation, keywords, "
        "matching brackets. Every bit less halves the model's uncertainty about the next character.",
    ),
    Question(
        "Sample at temperature 0.1 (nearly always the likeliest character). What does the text do?",
        ("it repeats itself", "it keeps varying"),
        {"corpus": "python", "model": "lstm", "steps": 600, "temperature": 0.1, "top_k": 0},
        _loops,
        "Dividing the scores by a small temperature makes the likeliest character almost certain. "
        "The model then always takes the same path from the same context, and once a context "
        "comes back, the text loops. Sampling at a temperature near 1 keeps the variety the model "
        "learned.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
