"""What a run will cost, known before it starts, and what the server allows one run to use.

Every lab offers `cost(cfg) -> Cost`: the tensors a training step keeps alive (weights, their
gradients and optimizer state, the activations saved for backward, the data on the device)
and the arithmetic of one step. This module turns a Cost into bytes and seconds, compares them
with the operator's budget (`Limits`), and, for a config past it, finds nearby settings that
fit, so the learner's message says what to lower and by how much.

The estimate is deliberately simple arithmetic, checked against measured peaks in bench/;
the worker enforces the same budget while the run trains, so an estimate that is off costs
a message, never the server.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from functools import lru_cache

from labs.core.config import knobs

BYTES = 4  # float32 everywhere
ALLOCATOR_SLACK = 1.3  # temporaries and the allocator's rounding, above the tensors we count
SNAPSHOT_SHARE = 1.3  # snapshots take at most ~25% of a run (labs/core/snapshot.Cadence)
MB = 1024**2


@dataclass(frozen=True)
class Cost:
    """One run's size, in floats and operations (counted per optimizer step)."""

    params: float  # trainable weights
    activations: float  # floats saved for backward in one step (all variants that train together)
    steps: int
    step_flops: float  # forward + backward of one step
    step_ops: float = 30  # tensor operations per step: what bounds tiny nets (launch overhead)
    optimizer_states: int = 2  # floats of optimizer state per weight (Adam 2, momentum 1)
    data: float = 0  # floats resident on the device for the whole run
    evaluation: float = 0  # floats alive at once while a snapshot measures (no gradients)
    wait: float = 0  # seconds per step spent waiting on purpose (a watched agent's pauses)
    kind: str = "dense"  # what the step's arithmetic is (KINDS): each runs at its own measured rate

    def memory_bytes(self) -> float:
        weights = self.params * (2 + self.optimizer_states)  # values, gradients, optimizer state
        live = weights + self.data + max(self.activations, self.evaluation)
        return BYTES * live * ALLOCATOR_SLACK

    def __add__(self, other: Cost) -> Cost:
        """Two things trained in lockstep (side-by-side variants): their sizes add up."""
        return Cost(
            self.params + other.params,
            self.activations + other.activations,
            max(self.steps, other.steps),
            self.step_flops + other.step_flops,
            self.step_ops + other.step_ops,
            max(self.optimizer_states, other.optimizer_states),
            max(self.data, other.data),  # variants share one copy of the data
            max(self.evaluation, other.evaluation),
            self.wait + other.wait,
            self.kind if self.step_flops >= other.step_flops else other.kind,  # the bulk's kind
        )


def total(costs) -> Cost:
    costs = list(costs)
    out = costs[0]
    for c in costs[1:]:
        out = out + c
    return out


# ---------------------------------------------------------------- the server's budget


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
        return value if math.isfinite(value) and value > 0 else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Limits:
    """What one run may use. DLLAB_RUN_MEMORY_MB, DLLAB_MAX_RUN_SECONDS (see the README)."""

    memory_mb: float = 2048.0
    seconds: float = 600.0

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            _env_float("DLLAB_RUN_MEMORY_MB", cls.memory_mb), _env_float("DLLAB_MAX_RUN_SECONDS", cls.seconds)
        )

    @property
    def memory_bytes(self) -> float:
        return self.memory_mb * MB


# The kinds of arithmetic a step is made of, each timed on a small piece of its own at start-up:
# a large matrix product ("dense": MLPs, attention), small convolutions with their backward
# ("conv": the lab's CNNs run far below the matmul rate), and a recurrent layer along a
# sequence with its backward ("recurrent": many small dependent products).
KINDS = ("dense", "conv", "recurrent")


@dataclass(frozen=True)
class Speed:
    """How fast this process trains: arithmetic throughput, per kind of work, and the fixed
    cost of one tensor operation (which is all that tiny nets pay). Measured, never assumed."""

    flops_per_second: float  # dense
    seconds_per_op: float
    rates: tuple = ()  # (kind, flops per second) of the other KINDS

    def rate(self, kind: str) -> float:
        """Flops per second of `kind` (the dense rate where that kind was not measured)."""
        return dict(self.rates).get(kind, self.flops_per_second)


def measured_speed(device_type: str = "cpu") -> Speed:
    """~50 ms of measuring, once per process and device kind. The best of three trials: a
    server that is busy for a moment should not make every estimate look slow."""
    return _measured(device_type)


@lru_cache(maxsize=4)
def _measured(device_type: str) -> Speed:
    import torch

    device = torch.device(device_type)
    a = torch.randn(256, 512, device=device)
    b = torch.randn(512, 512, device=device)
    tiny, tiny_ops = _tiny_step(device)
    conv, conv_flops = _conv_step(device)
    cell, cell_flops = _recurrent_steps(device)
    best = dict.fromkeys(("matmul", "op", "conv", "recurrent"), math.inf)
    for _ in range(3):
        for name, work, repeats in (
            ("matmul", lambda: a @ b, 5),
            ("op", tiny, 20),
            ("conv", conv, 6),
            ("recurrent", cell, 4),
        ):
            best[name] = min(best[name], _timed(work, repeats, device))
    rates = (("conv", conv_flops / best["conv"]), ("recurrent", cell_flops / best["recurrent"]))
    return Speed(2 * 256 * 512 * 512 / best["matmul"], best["op"] / tiny_ops, rates)


TINY_STEP_OPS = 62  # the tiny step below as the playground's cost counts it (14 + 16 per layer)


def _tiny_step(device):
    """One training step of a 2-8-8-1 MLP under Adam on 16 points, all overhead: what one
    counted operation (`Cost.step_ops`) costs inside a real step, autograd's bookkeeping and the
    optimizer's updates included (~2.5× a bare elementwise operation)."""
    import torch
    from torch.nn import functional as F

    net = torch.nn.Sequential(
        torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
    ).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.randn(16, 2, device=device), torch.rand(16, device=device)

    def step():
        loss = F.binary_cross_entropy_with_logits(net(x).squeeze(1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, TINY_STEP_OPS


def _conv_step(device):
    """A small convolution block's forward and backward as the lab's CNNs have them (3×3, 8 to
    16 channels on 28×28, ReLU, 2×2 pooling), and the convolution's flops as `Cost.step_flops`
    counts them (3× the forward): the ReLU and the pooling, memory-bound, are the block's price."""
    import torch
    from torch.nn import functional as F

    x = torch.randn(32, 8, 28, 28, device=device, requires_grad=True)
    w = torch.randn(16, 8, 3, 3, device=device, requires_grad=True)

    def step():
        F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2).sum().backward()

    return step, 3 * 2 * 32 * 16 * 28 * 28 * 8 * 9


def _recurrent_steps(device):
    """An LSTM layer (PyTorch's fused nn.LSTM, as the lab's recurrent nets use) run along 20
    steps and back (64 units, batches of 32), and its flops as the recurrent chapters count them."""
    import torch

    lstm = torch.nn.LSTM(16, 64, batch_first=True).to(device)
    xs = torch.randn(32, 20, 16, device=device)

    def steps():
        lstm(xs)[0].sum().backward()

    return steps, 3 * 2 * 4 * 64 * (16 + 64) * 32 * 20


def _timed(work, repeats: int, device) -> float:
    """Seconds of `work`'s fastest call of `repeats`, after one call to warm it. The fastest, not
    the mean: a server measures while its workers and other replicas start beside it, and a
    call that ran uninterrupted is what the machine can do (the mean of a busy second was 10×
    that: runs refused as "about 43 min" that take 5)."""
    work()
    _sync(device)
    fastest = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        _sync(device)
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(cost: Cost, speed: Speed) -> float:
    per_step = cost.step_flops / speed.rate(cost.kind) + cost.step_ops * speed.seconds_per_op + cost.wait
    return cost.steps * per_step * SNAPSHOT_SHARE


# ---------------------------------------------------------------- refusing, in words


@dataclass(frozen=True)
class Verdict:
    """Whether a config fits the budget; if not, why, and settings near it that fit."""

    fits: bool
    memory_bytes: float
    seconds: float
    message: str = ""
    suggestion: dict | None = None  # {knob name: value} that makes it fit, when one was found


TIME_TOLERANCE = 2.0  # a time estimate rests on a speed measured on a busy server: refuse only far past


def judge(cfg, cost_of, limits: Limits, speed: Speed) -> Verdict:
    """Compare a config's estimated memory and time with the budget. Memory is counted, so it
    is refused as soon as it is over; time rests on measured speed, so a run is refused only
    when its estimate is TIME_TOLERANCE times the limit, and between the two it is told it may
    be stopped at the limit (keeping what it learned by then)."""
    cost = cost_of(cfg)
    memory, secs = cost.memory_bytes(), seconds(cost, speed)
    over = _over(memory, secs / TIME_TOLERANCE, limits)
    if not over:
        warning = ""
        if secs > limits.seconds:
            warning = (
                f"This run may take about {duration(secs)}; this server stops runs at "
                f"{duration(limits.seconds)}, keeping what they learned by then."
            )
        return Verdict(True, memory, secs, warning)
    fitted = fitting(cfg, cost_of, limits, speed)
    changes = {k: getattr(fitted, k) for k in _changed(cfg, fitted)} if fitted is not None else None
    return Verdict(False, memory, secs, _refusal(cfg, over, memory, secs, limits, fitted, changes), changes)


def _over(memory: float, secs: float, limits: Limits) -> list[str]:
    return [
        what
        for what, bad in (("memory", memory > limits.memory_bytes), ("time", secs > limits.seconds))
        if bad
    ]


def _refusal(cfg, over, memory, secs, limits, fitted, changes) -> str:
    needs = []
    if "memory" in over:
        allowed = size(limits.memory_bytes)
        needs.append(f"about {size(memory)} of memory (this server allows {allowed} per run)")
    if "time" in over:
        needs.append(f"about {duration(secs)} (this server allows {duration(limits.seconds)} per run)")
    text = "This run would need " + " and ".join(needs) + "."
    if changes:
        labels = {name: k.label for name, k, _ in knobs(type(cfg))}
        lowered = ", ".join(f"{labels[n]} to {_shown(v)}" for n, v in changes.items())
        return text + f" Lower {lowered}, and it fits."
    return text + " Lower the model's size, the batch size or the number of steps."


LENGTHS = ("steps", "epochs", "episodes", "rounds")  # how long a run trains: shortened when time is short


FIT_MARGIN = 0.8  # suggested settings aim below the budget: estimates are estimates
PACE_GIVEN_UP = "full"  # a paced run's `speed` at full speed (labs/core/pacing.py)


def fitting(cfg, cost_of, limits: Limits, speed: Speed):
    """Settings near `cfg` that fit the budget, or None. The lesson's choices (which model,
    which task) are never changed; numeric settings are halved, greedily:
    1. memory: whichever size setting shrinks it most;
    2. pace: sizes again, until the chapter's default number of steps would fit in the time;
    3. length: the steps (or epochs), until the whole run fits.
    So a link for a huge model trained for hours becomes a smaller model trained for a
    meaningful while, not the same model for ten steps. A run played at a watchable pace
    (labs/core/pacing.py) that takes too long first gives up the pace: full speed computes the
    same."""
    limits = Limits(limits.memory_mb * FIT_MARGIN, limits.seconds * FIT_MARGIN)
    usual = cost_of(type(cfg)()).steps  # the steps of the chapter's default run
    if (
        getattr(cfg, "speed", PACE_GIVEN_UP) != PACE_GIVEN_UP
        and _time_excess(cost_of(cfg), limits, speed) > 0
    ):
        cfg = dataclasses.replace(cfg, speed=PACE_GIVEN_UP)

    def pace(cost: Cost) -> float:
        return _time_excess(dataclasses.replace(cost, steps=min(cost.steps, usual)), limits, speed)

    current = cfg
    for excess, only, exclude in (
        (lambda c: _memory_excess(c, limits), (), LENGTHS),
        (pace, (), LENGTHS),
        (lambda c: _time_excess(c, limits, speed), LENGTHS, ()),
    ):
        current = _shrink(current, cost_of, excess, only=only, exclude=exclude)
        if current is None:
            return None
    return current


def _shrink(cfg, cost_of, excess, only=(), exclude=(), rounds: int = 30):
    """Greedily halve settings (from `only`, or all but `exclude`) until `excess` is 0."""
    current = cfg
    for _ in range(rounds):
        now = excess(cost_of(current))
        if now <= 0:
            return current
        options = [c for name, c in _halvings(current) if (name in only or not only) and name not in exclude]
        scored = [(excess(cost_of(c)), c) for c in options]
        better = [(e, c) for e, c in scored if e < now - 1e-9]
        if not better:
            return None
        current = min(better, key=lambda ec: ec[0])[1]
    return None


def _memory_excess(cost: Cost, limits: Limits) -> float:
    return max(0.0, math.log(cost.memory_bytes() / limits.memory_bytes))


def _time_excess(cost: Cost, limits: Limits, speed: Speed) -> float:
    return max(0.0, math.log(seconds(cost, speed) / limits.seconds))


def _halvings(cfg):
    """(name, cfg with that numeric setting halved) for every setting that can go lower."""
    for name, k, default in knobs(type(cfg)):
        value = getattr(cfg, name)
        if name == "seed" or k.choices is not None or k.log or isinstance(default, bool) or k.lo is None:
            continue
        lower = max(k.lo, value / 2)
        if isinstance(default, int):
            step = int(k.step or 1)
            lower = max(int(k.lo), int(lower) // step * step or step)
        if lower < value:
            yield name, dataclasses.replace(cfg, **{name: lower})


def _changed(a, b) -> list[str]:
    return [name for name, _, _ in knobs(type(a)) if getattr(a, name) != getattr(b, name)]


def _shown(v) -> str:
    return f"{v:,}" if isinstance(v, int) else f"{v:g}"


def size(n_bytes: float) -> str:
    return f"{n_bytes / 1024**3:.1f} GB" if n_bytes >= 1024**3 else f"{max(n_bytes / MB, 1):.0f} MB"


def duration(secs: float) -> str:
    if secs < 90:
        return f"{secs:.0f} s"
    if secs < 5400:
        return f"{secs / 60:.0f} min"
    return f"{secs / 3600:.1f} h"


# ---------------------------------------------------------------- arithmetic for common layers


def linear(n_in: float, n_out: float, rows: float) -> tuple[float, float, float]:
    """(weights, forward+backward flops, floats saved) of a Linear layer applied to `rows`
    vectors. Backward costs twice the forward (the input's and the weights' gradients)."""
    return n_in * n_out + n_out, 3 * 2 * n_in * n_out * rows, rows * n_out


def mlp(widths: list[int], rows: float, saved_per_unit: float = 2) -> tuple[float, float, float]:
    """A stack of Linear layers (widths[0] in, widths[-1] out): its weights, flops, and the floats
    saved per sample-unit (the Linear's output and what the activation keeps, by default)."""
    params = flops = saved = 0.0
    for a, b in zip(widths, widths[1:]):
        p, f, s = linear(a, b, rows)
        params, flops, saved = params + p, flops + f, saved + s * saved_per_unit
    return params, flops, saved


def heaviest(cls, cost_of, fixed: dict | None = None):
    """The in-range config that costs most memory (then time): every setting pushed, one at a
    time, to whichever of its values costs most. What a hostile but valid link can ask for."""
    cfg = dataclasses.replace(cls(), **(fixed or {}))
    for _ in range(2):  # a second pass catches settings whose weight depends on another's
        for name, k, default in knobs(cls):
            if name == "seed" or name in (fixed or {}):
                continue
            options = [dataclasses.replace(cfg, **{name: v}) for v in _extremes(k, default)]
            cfg = max(options, key=lambda c: (cost_of(c).memory_bytes(), cost_of(c).steps))
    return cfg


def _extremes(k, default) -> list:
    if isinstance(default, bool):
        return [False, True]
    if k.multi:
        return [tuple(k.choices)]
    if k.choices is not None:
        return list(k.choices)
    if k.lo is None:
        return [default]
    kind = int if isinstance(default, int) else float
    return [kind(k.lo), kind(k.hi)]
