"""Chapter 2's runs trained stacked (labs/stacked.py): configs of one shape, of one
learner or many, as one loop; each member's snapshots and weights those of its run alone. On
a server the runner trains learners' runs here, as batches (labs/core/batches.py), a lone
learner's as a batch of one."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from labs import stack_members, stacked
from labs.core.control import Control
from labs.core.snapshot import Cadence, Snapshot
from labs.playground import (
    GRID,
    HIST_RANGE,
    MAX_SNAPS,
    MIN_SNAP_SECONDS,
    Config,
    _prepare,
    _Run,
    outputs,
    steps_per_second,
)


def stacking_key(cfg: Config) -> tuple | None:
    """What runs must share to train in one stack: the net's and the loop's shapes and the
    optimizer's rule. None: this run trains alone (BatchNorm's running statistics and dropout's
    random masks have no stacked form here; the stack trains one logit's cross-entropy, so
    softmax and squared-error runs train alone too)."""
    if cfg.batchnorm or cfg.dropout > 0 or outputs(cfg) != 1 or cfg.loss != "cross_entropy":
        return None
    return (
        cfg.features, cfg.hidden_layers, cfg.units, cfg.activation, cfg.optimizer,
        cfg.batch_size, cfg.epochs, cfg.points, cfg.train_fraction, cfg.speed,
    )  # fmt: skip


def train_together(cfgs: list[Config], device: torch.device):
    """Train configs of one shape as one stack from the start, yielding (member index,
    snapshot or the exception that ended it): each member's snapshots at its own cadence and
    its final weights, those its run alone makes up to float64 rounding."""
    stack = Stack(device)
    for i, cfg in enumerate(cfgs):
        stack.add(i, cfg)
    while stack.members:
        yield from stack.step()


@dataclass(eq=False, kw_only=True)
class _Member(stack_members.StackMember):
    run: _Run  # its net, its shuffling generator
    probe: object  # the run's Probe: its data, the grid, the points to draw


class Stack(stack_members.MemberStack):
    """Chapter 2 runs of one shape (`stacking_key`) training as one (labs/stack_members.py
    MemberStack): each member keeps its own step count, shuffling and snapshots."""

    MIN_SNAP_SECONDS = MIN_SNAP_SECONDS  # as a run's alone

    ALONE = "a run with BatchNorm, dropout, a softmax or squared error trains alone, not in a stack"

    def __init__(self, device: torch.device):
        super().__init__(device)
        self.inputs = self.targets = self.order = None  # (M, N, features), (M, N), (M, N)
        self.penalties: tuple[list, list] = ([], [])  # each member's L1 and L2 rate

    def key_of(self, cfg: Config) -> tuple | None:
        return stacking_key(cfg)

    def _member(self, key, cfg: Config, control: Control) -> _Member:
        run = _prepare(cfg, self.device)
        total = cfg.epochs * self._per_epoch(run.probe.train[0].shape[0], cfg.batch_size)
        cadence = Cadence(total, max_snaps=MAX_SNAPS, min_seconds=self.MIN_SNAP_SECONDS)
        return _Member(
            key=key, cfg=cfg, control=control, cadence=cadence, model=run.model, run=run, probe=run.probe
        )

    def _optimizer(self, cfg: Config) -> tuple[str, float]:
        return cfg.optimizer, cfg.learning_rate

    def per_second(self) -> float | None:
        return steps_per_second(self.members[0].cfg)  # one key, one pace

    def _data_rows(self, m: _Member) -> None:
        x, t = m.probe.train
        if len(self.members) == 1:  # the stack's first member (or the first after it emptied)
            self.inputs = self.targets = self.order = None
            self.penalties = ([], [])
            self._epoch_batches(x.shape[0], m.cfg.batch_size)
        for rates, kind in zip(self.penalties, ("L1", "L2")):
            rates.append(m.cfg.reg_rate if m.cfg.regularization == kind else 0.0)
        self.inputs = _cat(self.inputs, x[None].to(stacked.DTYPE))
        self.targets = _cat(self.targets, t[None].to(stacked.DTYPE))
        self.order = _cat(self.order, torch.arange(x.shape[0], device=self.device)[None])

    def _keep_data(self, rows: torch.Tensor) -> None:
        self.inputs, self.targets, self.order = self.inputs[rows], self.targets[rows], self.order[rows]
        self.penalties = tuple([rates[row] for row in rows.tolist()] for rates in self.penalties)

    def _measure(self, members: list[_Member], params: dict, grads: dict) -> list[Snapshot]:
        return snapshots_together(members, params, grads, self._total)

    def _train_step(self) -> tuple[torch.Tensor, dict]:
        first, members = self.members[0].cfg, self.members
        n = self.inputs.shape[1]
        places = [m.done % self.per_epoch for m in members]  # each member's batch of its epoch
        for row, (m, place) in enumerate(zip(members, places)):  # each shuffles with its own generator
            if place == 0:
                self.order[row] = torch.randperm(n, generator=m.run.generator).to(self.device)
        place = torch.tensor(places, device=self.device)
        batch = self.order.gather(1, self.batch_points[place])  # (M, B): each member's batch
        rows = torch.arange(len(members), device=self.device)[:, None]
        x, targets = self.inputs[rows, batch], self.targets.gather(1, batch)
        losses, grads = losses_and_grads(self.params, x, targets, self.batch_share[place], first)
        weights = [name for name in grads if name.endswith("weight")]
        stacked.add_penalty_grads(grads, self.params, weights, *self.penalties)
        self.opt.step(grads)
        return losses, grads

    def _epoch_batches(self, n: int, batch_size: int) -> None:
        """Which of an epoch's shuffled points each of its batches takes (batch, point), and
        each point's weight in its batch's mean loss: an epoch's last batch may be short, its
        padding weighing 0."""
        self.per_epoch = self._per_epoch(n, batch_size)
        size = min(batch_size, n)
        points = torch.arange(self.per_epoch * size, device=self.device).view(self.per_epoch, size)
        real = (points < n).to(stacked.DTYPE)
        self.batch_share = real / real.sum(1, keepdim=True)
        self.batch_points = points.clamp(max=n - 1)

    def _total(self, m: _Member) -> int:
        return m.cfg.epochs * self._per_epoch(self.inputs.shape[1], m.cfg.batch_size)

    @staticmethod
    def _per_epoch(n: int, batch_size: int) -> int:
        return math.ceil(n / min(batch_size, n))


@torch.no_grad()
def snapshots_together(members: list[_Member], params: dict, grads: dict, total_of) -> list[Snapshot]:
    """labs/playground.py `_snapshot` for several members in one pass: their nets (`params`,
    `grads`: (D, ...) rows in member order) measured on their own training and test sets and
    on the shared grid, each member's numbers as its net alone would give them (float32, as
    its nn.Module holds its weights)."""
    cfg = members[0].cfg
    weights = {name: p.float() for name, p in params.items()}
    train_x = torch.stack([m.probe.train[0] for m in members])  # (D, N, features)
    train_t = torch.stack([m.probe.train[1] for m in members])
    test_x = torch.stack([m.probe.test[0] for m in members])
    test_t = torch.stack([m.probe.test[1] for m in members])
    grid = members[0].probe.grid.expand(len(members), -1, -1)  # one plane: same features for all
    train_acts, train_logits = _recorded_forward(weights, train_x, cfg)
    test_logits = _stacked_forward(weights, test_x, cfg).squeeze(-1)
    grid_acts, grid_logits = _recorded_forward(weights, grid, cfg)
    own_grads = {name: [grads[f"{lin}.weight"], grads[f"{lin}.bias"]] for name, lin in _linears(cfg).items()}
    layers = stacked.layer_stats_together(
        train_acts | {"output": train_logits[..., None]}, own_grads, HIST_RANGE[cfg.activation]
    )
    numbers = torch.stack(
        [
            F.binary_cross_entropy_with_logits(train_logits, train_t, reduction="none").mean(1),
            F.binary_cross_entropy_with_logits(test_logits, test_t, reduction="none").mean(1),
            ((train_logits > 0).float() == train_t).float().mean(1),
            ((test_logits > 0).float() == test_t).float().mean(1),
        ],
        dim=1,
    ).tolist()
    boundary = torch.sigmoid(grid_logits).reshape(-1, GRID, GRID).cpu().numpy()
    maps = [a.transpose(1, 2).reshape(len(members), -1, GRID, GRID).cpu().numpy() for a in grid_acts.values()]
    return [
        Snapshot(
            m.done,
            total_of(m),
            dict(zip(("train_loss", "test_loss", "train_acc", "test_acc"), numbers[i])),
            layers[i],
            view={"boundary": boundary[i], "neurons": [units[i] for units in maps], **m.probe.points},
        )
        for i, m in enumerate(members)
    ]


def _linears(cfg: Config) -> dict[str, str]:
    """Each recorded layer's name -> the Linear feeding it (labs/playground.py recorded_layers)."""
    return {f"layer {i + 1}": f"blocks.{i}.linear" for i in range(cfg.hidden_layers)} | {"output": "out"}


def _recorded_forward(params: dict, x: torch.Tensor, cfg: Config) -> tuple[dict, torch.Tensor]:
    """`_stacked_forward` keeping each hidden layer's output: ({"layer i": (D, B, units)}, (D, B))."""
    act, acts = STACKED_ACTIVATIONS[cfg.activation], {}
    for i in range(cfg.hidden_layers):
        x = act(stacked.linear(x, params[f"blocks.{i}.linear.weight"], params[f"blocks.{i}.linear.bias"]))
        acts[f"layer {i + 1}"] = x
    return acts, stacked.linear(x, params["out.weight"], params["out.bias"]).squeeze(-1)


def _cat(stack: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
    """Data `rows` appended to `stack` along the member dimension."""
    return rows if stack is None else torch.cat([stack, rows])


STACKED_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu}
# each activation's derivative from its input z and output h, as autograd's backward computes it
SLOPES = {
    "relu": lambda z, h: z > 0,
    "tanh": lambda z, h: 1 - h * h,
    "sigmoid": lambda z, h: (1 - h) * h,
    "gelu": lambda z, h: (
        0.5 * (1 + torch.erf(z * math.sqrt(0.5))) + z * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    ),
}


@torch.no_grad()
def losses_and_grads(params: dict, x: torch.Tensor, targets: torch.Tensor, share: torch.Tensor, cfg: Config):
    """Each member's mean cross-entropy over its batch (x: (M, B, features), targets and each
    point's `share` of its mean: (M, B), 0 for an epoch's short last batch's padding) and the
    gradients of their sum, the backward pass written out: on
    nets this small a step's time is overhead per operation, and autograd's engine costs as much
    again as the twenty operations of the pass itself (measured: 450 vs 210 us for 16 members).
    tests/test_stacked.py holds it to autograd's gradients for every activation."""
    act, slope = STACKED_ACTIVATIONS[cfg.activation], SLOPES[cfg.activation]
    inputs, layers = [], []  # each hidden layer's input, and its (pre-activation, output)
    h = x
    for i in range(cfg.hidden_layers):
        z = stacked.linear(h, params[f"blocks.{i}.linear.weight"], params[f"blocks.{i}.linear.bias"])
        inputs.append(h)
        h = act(z)
        layers.append((z, h))
    logits = stacked.linear(h, params["out.weight"], params["out.bias"]).squeeze(-1)
    losses = (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * share).sum(1)
    delta = ((torch.sigmoid(logits) - targets) * share).unsqueeze(-1)  # d losses.sum() / d logits
    grads = {"out.weight": torch.bmm(delta.transpose(1, 2), h), "out.bias": delta.sum(1)}
    weight = params["out.weight"]
    for i in reversed(range(cfg.hidden_layers)):
        delta = torch.bmm(delta, weight) * slope(*layers[i])
        weight = params[f"blocks.{i}.linear.weight"]
        grads[f"blocks.{i}.linear.weight"] = torch.bmm(delta.transpose(1, 2), inputs[i])
        grads[f"blocks.{i}.linear.bias"] = delta.sum(1)
    return losses, grads


def _stacked_forward(params: dict[str, torch.Tensor], x: torch.Tensor, cfg: Config) -> torch.Tensor:
    """PlaygroundNet's forward for every member at once: x (M, B, features) -> (M, B, 1)."""
    act = STACKED_ACTIVATIONS[cfg.activation]
    for i in range(cfg.hidden_layers):
        x = act(stacked.linear(x, params[f"blocks.{i}.linear.weight"], params[f"blocks.{i}.linear.bias"]))
    return stacked.linear(x, params["out.weight"], params["out.bias"])


_load_member = stack_members.load_member  # tests load a member into its own net
