"""Chapter 12 — Recurrent networks.

RNN, LSTM and GRU cells (optionally bidirectional) trained side by side under one seed
(labs/core/compare.py) on two generated tasks:

- memory: a stream of random symbols; one of them is marked, and at the last step the net must
  name the marked symbol. How far back the mark lies (up to `span` steps) is how long the net
  must hold it. Spans are drawn from 1..span in every batch, so short spans teach the trick and
  long ones test whether the cell can keep it;
- forecast: noisy sums of sines; from a window of `span` values, predict the next `horizon`.

Each snapshot measures what the cell does inside: accuracy at every span, the hidden state over
one sequence, and how much gradient reaches each earlier time step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labs.core import budget
from labs.core.attribution import integrated_gradients, occlude_steps
from labs.core.compare import side_by_side
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import EXPLODES, LossWatch
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy

PREFERS_GPU = False  # a few thousand weights stepping through time: overhead-bound, CPU is as fast
SYMBOLS = 4  # chance on the memory task is 1/4
CELLS = {"rnn": ("RNN", nn.RNN), "lstm": ("LSTM", nn.LSTM), "gru": ("GRU", nn.GRU)}
TASKS = {"memory": "memory: name the marked symbol", "forecast": "forecast: sums of sines"}
PROBE = 256  # sequences measured at each snapshot


@dataclass(frozen=True)
class Config:
    task: str = knob(
        "memory", "Task", "What the sequence asks of the net.", choices=tuple(TASKS), labels=TASKS
    )
    cells: tuple = knob(
        ("rnn", "lstm", "gru"),
        "Compare",
        "Each cell type is trained on the same batches from the same seed.",
        choices=tuple(CELLS),
        multi=True,
        labels={k: label for k, (label, _) in CELLS.items()},
    )
    bidirectional: bool = knob(
        False, "Bidirectional", "A second cell reads the sequence backwards; the head sees both."
    )
    span: int = knob(
        40,
        "Span (memory) / window (forecast)",
        "Memory: the mark lies up to this many steps before the answer. Forecast: values the net sees.",
        lo=2,
        hi=200,
        step=1,
    )
    horizon: int = knob(
        10, "Forecast horizon", "Forecast: how many future values to predict.", lo=1, hi=50, step=1
    )
    noise: float = knob(
        0.1, "Noise (forecast)", "Forecast: std of the noise on the sines.", lo=0.0, hi=1.0, step=0.05
    )
    hidden: int = knob(32, "Hidden units", "Size of the cell's state.", lo=4, hi=256, step=4)
    learning_rate: float = knob(
        0.01, "Learning rate", "Adam; gradients clipped to norm 1.", lo=1e-4, hi=0.1, log=True
    )
    batch_size: int = knob(128, "Batch size", "Sequences per step.", lo=8, hi=512, step=8)
    steps: int = knob(300, "Steps", "Gradient steps for each cell.", lo=10, hi=5000, step=10)
    seed: int = knob(0, "Seed", "Same seed, same sequences, same run.", lo=0, hi=9999, step=1)


def label(cell: str) -> str:
    return CELLS[cell][0]


# ---- the two tasks -------------------------------------------------------------------------


def memory_batch(n: int, span: int, g: torch.Generator, shortest: int = 1, longest: int | None = None):
    """n sequences of span+1 steps: random symbols, one marked; the target is the marked symbol.

    Channels: one-hot symbol (SYMBOLS), "remember this" mark, "answer now" cue on the last step.
    The mark lies `shortest..longest` steps before the last step. Returns (X, y, distance)."""
    longest = span if longest is None else longest
    length = span + 1
    symbols = torch.randint(0, SYMBOLS, (n, length), generator=g)
    distance = torch.randint(shortest, longest + 1, (n,), generator=g)
    rows, marked = torch.arange(n), length - 1 - distance
    X = F.one_hot(symbols, SYMBOLS + 2).float()
    X[..., SYMBOLS:] = 0.0
    X[rows, marked, SYMBOLS] = 1.0
    X[:, -1, SYMBOLS + 1] = 1.0
    return X, symbols[rows, marked], distance


def forecast_batch(n: int, window: int, horizon: int, noise: float, g: torch.Generator):
    """n noisy sums of three sines: (inputs (n, window, 1), noisy future (n, horizon), clean future)."""
    t = torch.arange(window + horizon, dtype=torch.float32)
    freq = 0.01 + 0.09 * torch.rand(n, 3, 1, generator=g)  # cycles per step
    phase = 2 * math.pi * torch.rand(n, 3, 1, generator=g)
    amp = 0.3 + 0.7 * torch.rand(n, 3, 1, generator=g)
    clean = (amp * torch.sin(2 * math.pi * freq * t + phase)).sum(1) / 1.5
    noisy = clean + noise * torch.randn(clean.shape, generator=g)
    return noisy[:, :window, None], noisy[:, window:], clean[:, window:]


# ---- the model -----------------------------------------------------------------------------


class SequenceNet(nn.Module):
    """A recurrent cell and a linear head on its state at the answer step.

    Bidirectional: the head reads the forward cell's last state and the backward cell's state
    at the first step (each has then read the whole sequence)."""

    def __init__(self, cell: str, n_in: int, hidden: int, n_out: int, bidirectional: bool = False):
        super().__init__()
        self.hidden = hidden
        self.rnn = CELLS[cell][1](n_in, hidden, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), n_out)
        if cell == "lstm":  # forget-gate bias 1: start by remembering (Jozefowicz et al., 2015)
            with torch.no_grad():
                for name, bias in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):
                        bias[hidden : 2 * hidden] = 1.0

    def states(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden state at every step: (batch, time, hidden × directions)."""
        return self.rnn(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.states(x)
        if self.rnn.bidirectional:
            return self.head(torch.cat([out[:, -1, : self.hidden], out[:, 0, self.hidden :]], dim=1))
        return self.head(out[:, -1])


def build_model(cfg: Config, cell: str) -> SequenceNet:
    n_in, n_out = (SYMBOLS + 2, SYMBOLS) if cfg.task == "memory" else (1, cfg.horizon)
    return SequenceNet(cell, n_in, cfg.hidden, n_out, cfg.bidirectional)


GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight blocks per cell: what each time step multiplies


def cost(cfg: Config) -> budget.Cost:
    """Every chosen cell trains at once, side by side."""
    return budget.total(cell_cost(cfg, cell) for cell in cfg.cells)


def cell_cost(cfg: Config, cell: str) -> budget.Cost:
    """A cell unrolled over the sequence keeps its gates and states at every step for backward."""
    memory = cfg.task == "memory"
    steps_in = cfg.span + 1 if memory else cfg.span
    n_in, n_out = (SYMBOLS + 2, SYMBOLS) if memory else (1, cfg.horizon)
    ways, gates, h = 2 if cfg.bidirectional else 1, GATES[cell], cfg.hidden
    per_sequence = steps_in * ways * h * (gates + 3) + steps_in * n_in  # saved floats
    return budget.Cost(
        params=ways * gates * h * (n_in + h + 2) + ways * h * n_out + n_out,
        activations=cfg.batch_size * per_sequence,
        steps=cfg.steps,
        step_flops=3 * 2 * ways * gates * h * (n_in + h) * steps_in * cfg.batch_size,
        step_ops=40 + steps_in * ways * 30,
        evaluation=PROBE * per_sequence,  # the gradient through time of the probe sequences
        kind="recurrent",
    )


def load_model(cfg: Config, cell: str, state_dict: dict) -> SequenceNet:
    model = build_model(cfg, cell)
    model.load_state_dict(state_dict)
    return model.eval()


# ---- training ------------------------------------------------------------------------------


def train(cfg: Config, device: torch.device):
    """Every chosen cell, side by side: one lockstep run of `train_cell` each."""
    check(cfg)
    yield from side_by_side({label(c): train_cell(cfg, c, device) for c in cfg.cells}, device)


def train_cell(cfg: Config, cell: str, device: torch.device):
    """Adam with gradient clipping on fresh generated batches; snapshots measure the insides."""
    g = seed_everything(cfg.seed)
    model = build_model(cfg, cell).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    probe = _probe(cfg, device)
    cadence = Cadence(cfg.steps, max_snaps=40, min_seconds=0.1)
    step, watch = 0, LossWatch(explode=EXPLODES)
    for step in steps(cfg.steps):  # ends early on Stop
        inputs, target = _batch(cfg, cfg.batch_size, g, device)
        loss = _loss(cfg, model(inputs), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log(step, train_loss=loss)
        watch.see(loss=loss)
        if cadence.due(step):
            watch.check(step)
            yield _snapshot(cfg, model, step, loss.item(), probe)
    yield Snapshot(step, cfg.steps, final=True, state_dict=cpu_state_dict(model))


def _batch(cfg: Config, n: int, g: torch.Generator, device: torch.device):
    if cfg.task == "memory":
        X, y, _ = memory_batch(n, cfg.span, g)
        return X.to(device), y.to(device)
    X, future, _ = forecast_batch(n, cfg.span, cfg.horizon, cfg.noise, g)
    return X.to(device), future.to(device)


def _loss(cfg: Config, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target) if cfg.task == "memory" else F.mse_loss(output, target)


def _probe(cfg: Config, device: torch.device) -> dict:
    """Fixed test sequences (their own seed): the memory probe has the mark at the full span, the
    hardest case; forecasts are scored against the clean future."""
    g = torch.Generator().manual_seed(10_000 + cfg.seed)
    if cfg.task == "memory":
        X, y, _ = memory_batch(PROBE, cfg.span, g, shortest=cfg.span)
        spans = sorted({max(1, round(cfg.span * f)) for f in np.linspace(0.05, 1.0, 12)})
        by_span = [tuple(t.to(device) for t in memory_batch(128, cfg.span, g, s, s)[:2]) for s in spans]
        return {"X": X.to(device), "y": y.to(device), "spans": spans, "by_span": by_span}
    X, future, clean = forecast_batch(PROBE, cfg.span, cfg.horizon, cfg.noise, g)
    return {"X": X.to(device), "y": future.to(device), "clean": clean.to(device)}


def gradient_by_step(cfg: Config, model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """‖∂answer/∂x_t‖ for every time step t, averaged over the probe: how strongly the answer
    (memory: the right symbol's score; forecast: the first predicted value) responds to each
    earlier input, which is also how much error signal reaches it in training. A plain RNN's
    fades geometrically with distance."""
    X = X.clone().requires_grad_(True)
    with torch.backends.cudnn.flags(enabled=False):  # cuDNN RNN backward refuses eval mode
        out = model(X)
        answer = out.gather(1, y[:, None]) if cfg.task == "memory" else out[:, :1]
        answer.sum().backward()
    model.zero_grad(set_to_none=True)
    return to_numpy(X.grad.norm(dim=2).mean(0))


def _snapshot(cfg: Config, model: SequenceNet, step: int, loss: float, probe: dict) -> Snapshot:
    model.eval()
    grads = gradient_by_step(cfg, model, probe["X"], probe["y"])
    with torch.no_grad():
        out = model(probe["X"])
        hidden = to_numpy(model.states(probe["X"][:1])[0])  # (time, units) of sequence 0
        view = {"hidden": hidden, "grad_by_step": grads}
        if cfg.task == "memory":
            metrics = {"train_loss": loss, "test_acc": _accuracy(out, probe["y"])}
            view["spans"] = probe["spans"]
            view["chance"] = 1 / SYMBOLS  # a guess among the symbols
            view["acc_by_span"] = [_accuracy(model(X), y) for X, y in probe["by_span"]]
        else:
            clean = probe["clean"]
            persistence = probe["X"][:, -1, :].expand_as(clean)  # "tomorrow = today"
            metrics = {"train_loss": loss, "test_mse": F.mse_loss(out, clean).item()}
            view["persistence_mse"] = F.mse_loss(persistence, clean).item()
            view["forecast"] = {
                "past": to_numpy(probe["X"][:3, :, 0]),
                "truth": to_numpy(clean[:3]),
                "pred": to_numpy(out[:3]),
            }
    model.train()
    return Snapshot(step, cfg.steps, metrics, view=view)


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()


# ---- after training: one sequence, explained -------------------------------------------------


def example(cfg: Config, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Test sequence `index` of the probe (same seed as the snapshots): (x of shape (1, T, C), target)."""
    probe = _probe(cfg, torch.device("cpu"))
    return probe["X"][index : index + 1], probe["y"][index]


SYMBOL_NAMES = "ABCD"


def step_labels(cfg: Config, x: torch.Tensor) -> tuple[list[str], int | None]:
    """What a learner reads at each step of one sequence, and where the mark is (memory only)."""
    if cfg.task == "memory":
        labels = [SYMBOL_NAMES[i] for i in x[0, :, :SYMBOLS].argmax(1).tolist()]
        return labels[:-1] + ["?"], int(x[0, :, SYMBOLS].argmax())
    return [f"{v:.1f}" for v in x[0, :, 0].tolist()], None


def baseline_for(cfg: Config, x: torch.Tensor) -> torch.Tensor:
    """What "no information" means for IG. Memory: the same sequence with every symbol blurred to
    "any of A-D" (1/4 each) while the mark and the answer cue stay, so the attributions say which
    symbols' identities mattered. Forecast: a flat zero signal (the sines' mean)."""
    if cfg.task != "memory":
        return torch.zeros_like(x)
    base = x.clone()
    base[..., :SYMBOLS] = 1.0 / SYMBOLS
    return base


def explain(cfg: Config, model: SequenceNet, x: torch.Tensor, target: int) -> dict:
    """Two Captum answers to "which steps drove this prediction" (memory: a class's score;
    forecast: the output at one horizon): Integrated Gradients summed over input channels, and
    occlusion of one step at a time. A trained memory cell acts like a switch, so IG's straight
    path crosses a cliff its quadrature can miss; its delta says when, and occlusion cross-checks."""
    baseline = baseline_for(cfg, x)
    with torch.backends.cudnn.flags(enabled=False):  # cuDNN RNN backward refuses eval mode
        attr, delta = integrated_gradients(model, x, target, baseline, steps=256)
    with torch.no_grad():
        output, at_baseline = model(x)[0], model(baseline)[0]
    return {
        "ig": attr.sum(axis=1),
        "delta": delta,
        "gap": float(output[target] - at_baseline[target]),  # what IG's sum should equal
        "occlusion": occlude_steps(model, x, target, baseline),
        "output": to_numpy(output),
    }


# ---- what the runs say ---------------------------------------------------------------------


def final(view, cell: str, metric: str) -> float | None:
    """A cell's last value of a metric; None if it diverged before its first snapshot."""
    return view.last(f"{label(cell)}: {metric}")


def _solvers(view) -> tuple[str, str]:
    solved = [c for c in CELLS if (final(view, c, "test_acc") or 0.0) > 0.9]
    names = " and ".join(label(c) for c in solved) or "none"
    accs = ", ".join(f"{label(c)} {final(view, c, 'test_acc') or 0:.0%}" for c in CELLS)
    answers = {
        (): "none",
        ("rnn",): "RNN only",
        ("lstm", "gru"): "LSTM and GRU only",
        tuple(CELLS): "all three",
    }
    return answers.get(tuple(solved), names), f"Accuracy at the full span: {accs} (chance 25%)."


QUESTIONS = [
    Question(
        "The mark lies up to 40 steps back. After 300 steps, which cells name it (over 90%)?",
        ("all three", "LSTM and GRU only", "RNN only", "none"),
        {"task": "memory", "cells": ("rnn", "lstm", "gru"), "span": 40, "steps": 300, "bidirectional": False},
        _solvers,
        "The plain RNN multiplies its state by the same weights at every step, so both the memory "
        "and the gradient that would teach it to keep one fade geometrically. The LSTM's cell state "
        "and the GRU's update gate carry the symbol along an almost-identity path.",
    ),
    Question(
        "Now the mark is at most 5 steps back. Which cells name it?",
        ("all three", "LSTM and GRU only", "RNN only", "none"),
        {"task": "memory", "cells": ("rnn", "lstm", "gru"), "span": 5, "steps": 300, "bidirectional": False},
        _solvers,
        "Over a handful of steps the gradient has not yet faded: the plain RNN learns short memories "
        "fine. Its trouble is distance, not memory as such.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
