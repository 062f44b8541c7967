"""Chapter 2's runs trained stacked (labs/stacked.py): configs of one shape, of one
learner or many, as one loop; each member's snapshots and weights those of its run alone. On
a server the runner trains learners' runs here, as batches (labs/core/batches.py), a lone
learner's as a batch of one."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from labs import stacked
from labs.core.config import check
from labs.core.control import Control, current
from labs.core.divergence import LossWatch
from labs.core.failures import Diverged
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict
from labs.playground import GRID, HIST_RANGE, Config, PlaygroundNet, _prepare, _Run, outputs

MIN_SNAP_SECONDS = 0.05  # a member's snapshots, as a run's alone (labs/playground.py train)
SNAP_SHARE = 3  # a member waits 3× the snapshots of all members: measuring stays ≤ ~1/4 of a stack


def stacking_key(cfg: Config) -> tuple | None:
    """What runs must share to train in one stack: the net's and the loop's shapes and the
    optimizer's rule. None: this run trains alone (BatchNorm's running statistics and dropout's
    random masks have no stacked form here; the stack trains one logit's cross-entropy, so
    softmax and squared-error runs train alone too)."""
    if cfg.batchnorm or cfg.dropout > 0 or outputs(cfg) != 1 or cfg.loss != "cross_entropy":
        return None
    return (
        cfg.features, cfg.hidden_layers, cfg.units, cfg.activation, cfg.optimizer,
        cfg.batch_size, cfg.epochs, cfg.points, cfg.train_fraction,
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


@dataclass(eq=False)
class _Member:
    key: object
    cfg: Config
    run: _Run
    control: Control
    probe: object  # the run's Probe: its data, the grid, the points to draw
    cadence: Cadence
    watch: LossWatch = field(default_factory=LossWatch)
    done: int = 0  # steps trained


class Stack:
    """Chapter 2 runs of one shape (`stacking_key`) training as one: members join at the next
    step (their rows appended, nobody else restarts) and leave when their run ends, at their
    last step, on Stop or their budget (their Control, as `steps()` hears it), or diverging.
    Each member keeps its own step count, shuffling and snapshots."""

    def __init__(self, device: torch.device):
        self.device = device
        self.members: list[_Member] = []
        self.key: tuple | None = None
        self.params: dict[str, torch.Tensor] = {}
        self.opt: stacked.StackedOptimizer | None = None
        self.inputs = self.targets = self.order = None  # (M, N, features), (M, N), (M, N)
        self.snap_seconds = 0.0  # what one member's snapshot costs, a moving average

    def add(self, key, cfg: Config, control: Control | None = None) -> None:
        """A run joins: it trains from the next step, under `control` (this thread's if none)."""
        check(cfg)
        if stacking_key(cfg) is None:  # this loop would silently drop what it lacks
            raise ValueError(
                "a run with BatchNorm, dropout, a softmax or squared error trains alone, not in a stack"
            )
        if self.members and stacking_key(cfg) != self.key:
            raise ValueError("a run of another shape cannot join this stack")
        run = _prepare(cfg, self.device)
        total = cfg.epochs * self._per_epoch(run.probe.train[0].shape[0], cfg.batch_size)
        cadence = Cadence(total, max_snaps=80, min_seconds=MIN_SNAP_SECONDS)
        self.members.append(_Member(key, cfg, run, control or current(), run.probe, cadence))
        self.key = stacking_key(cfg)
        mine = stacked.stack_params([run.model])
        self.params = {name: _cat(self.params.get(name), rows) for name, rows in mine.items()}
        n = run.probe.train[0].shape[0]
        self.inputs = _cat(self.inputs, run.probe.train[0][None].to(stacked.DTYPE), grad=False)
        self.targets = _cat(self.targets, run.probe.train[1][None].to(stacked.DTYPE), grad=False)
        self.order = _cat(self.order, torch.arange(n, device=self.device)[None], grad=False)
        if self.opt is None:
            self.opt = stacked.StackedOptimizer(self.params, cfg.optimizer, [cfg.learning_rate])
        else:
            self.opt.params = self.params
            self.opt.add_members([cfg.learning_rate])

    def step(self) -> list[tuple[object, object]]:
        """One training step for every member; returns (key, snapshot or exception) for what
        the members made: snapshots due, and the final snapshot of each run that ended."""
        ending = [m for m in self.members if self._must_end(m)]  # before their next step
        out = [(m.key, self._final(m)) for m in ending]
        self._remove(ending)
        if not self.members:
            return out
        # the members' snapshots share the stack's time: together at most ~1/4 of it
        apart = SNAP_SHARE * self.snap_seconds * len(self.members)
        for m in self.members:
            m.cadence.min_seconds = max(MIN_SNAP_SECONDS, apart)
        losses, grads = self._train_step()
        ended: list[tuple[_Member, object]] = []
        values = losses.tolist()  # one read for all members, not one small tensor each
        due = [row for row, m in enumerate(self.members) if self._count_step(m, values[row])]
        if due:  # members nearly due are measured in the same pass (Cadence.along)
            due += [row for row, m in enumerate(self.members) if row not in due and m.cadence.along(m.done)]
        measured = []
        for row, m in enumerate(self.members):
            if row in due:
                try:
                    m.watch.check(m.done, loss=losses[row])
                except Diverged as err:  # this member leaves; the others train on
                    m.control.flush(m.done)
                    ended.append((m, err))
                    continue
                measured.append(row)
            if m.done == self._total(m):
                m.control.report(m.done, m.done)
                ended.append((m, None))
        if measured:
            out += self._snapshots(measured, grads)
        out += [(m.key, err if err is not None else self._final(m)) for m, err in ended]
        self._remove([m for m, _ in ended])
        return out

    @staticmethod
    def _count_step(m: _Member, loss: float) -> bool:
        """A member's step is counted (its loss logged); says whether its snapshot is due."""
        m.done += 1
        m.control.log(m.done, {"train_loss": loss})
        return m.cadence.due(m.done)

    def _snapshots(self, rows: list[int], grads: dict) -> list[tuple[object, Snapshot]]:
        began = time.perf_counter()
        members = [self.members[row] for row in rows]
        index = torch.tensor(rows, device=self.device)
        params = {name: p.detach()[index] for name, p in self.params.items()}
        snaps = snapshots_together(members, params, {n: g[index] for n, g in grads.items()}, self._total)
        each = (time.perf_counter() - began) / len(rows)
        self.snap_seconds = 0.8 * self.snap_seconds + 0.2 * each
        return [(m.key, snap) for m, snap in zip(members, snaps)]

    def _must_end(self, m: _Member) -> bool:
        """As `steps()` asks before each step: Stop, the time or memory budget."""
        m.control.report(m.done, self._total(m))
        return bool(m.control.should_end())

    def _train_step(self) -> tuple[torch.Tensor, dict]:
        first, members = self.members[0].cfg, self.members
        n, size = self.inputs.shape[1], first.batch_size
        per_epoch = self._per_epoch(n, size)
        for row, m in enumerate(members):  # each member shuffles with its own generator
            if m.done % per_epoch == 0:
                self.order[row] = torch.randperm(n, generator=m.run.generator).to(self.device)
        start = torch.tensor([(m.done % per_epoch) * size for m in members], device=self.device)
        index = start[:, None] + torch.arange(size, device=self.device)  # (M, B)
        real = (index < n).to(stacked.DTYPE)  # an epoch's last batch may be short
        rows = torch.arange(len(members), device=self.device)[:, None]
        batch = self.order[rows, index.clamp(max=n - 1)]
        logits = _stacked_forward(self.params, self.inputs[rows, batch], first).squeeze(-1)  # (M, B)
        each = F.binary_cross_entropy_with_logits(logits, self.targets[rows, batch], reduction="none")
        losses = (each * real).sum(1) / real.sum(1)  # each member's mean over its batch
        weights = [name for name in self.params if name.endswith("weight")]
        l1 = [m.cfg.reg_rate if m.cfg.regularization == "L1" else 0.0 for m in members]
        l2 = [m.cfg.reg_rate if m.cfg.regularization == "L2" else 0.0 for m in members]
        penalty = stacked.weight_penalty(self.params, weights, l1, l2)
        grads = torch.autograd.grad(losses.sum() + penalty, list(self.params.values()))
        grads = dict(zip(self.params, grads))
        self.opt.step(grads)
        return losses.detach(), grads

    def _final(self, m: _Member) -> Snapshot:
        """The member's last snapshot, with its weights (its rows are still in the stack)."""
        m.control.flush(m.done)
        _load_member(m.run.model, self.params, None, self.members.index(m))
        return Snapshot(m.done, self._total(m), final=True, state_dict=cpu_state_dict(m.run.model))

    def _remove(self, leaving: list[_Member]) -> None:
        """Take these members' rows out of the stack; the others go on where they were."""
        if not leaving:
            return
        keep = [row for row, m in enumerate(self.members) if m not in leaving]
        self.members = [self.members[row] for row in keep]
        rows = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.params = {name: p.detach()[rows].requires_grad_(True) for name, p in self.params.items()}
        self.inputs, self.targets, self.order = self.inputs[rows], self.targets[rows], self.order[rows]
        self.opt.params = self.params
        self.opt.keep_members(rows)

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


def _cat(stack: torch.Tensor | None, rows: torch.Tensor, grad: bool = True) -> torch.Tensor:
    """`rows` appended to `stack` along the member dimension (a new leaf for parameters)."""
    out = rows.detach() if stack is None else torch.cat([stack.detach(), rows.detach()])
    return out.requires_grad_(True) if grad else out


STACKED_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu}


def _stacked_forward(params: dict[str, torch.Tensor], x: torch.Tensor, cfg: Config) -> torch.Tensor:
    """PlaygroundNet's forward for every member at once: x (M, B, features) -> (M, B, 1)."""
    act = STACKED_ACTIVATIONS[cfg.activation]
    for i in range(cfg.hidden_layers):
        x = act(stacked.linear(x, params[f"blocks.{i}.linear.weight"], params[f"blocks.{i}.linear.bias"]))
    return stacked.linear(x, params["out.weight"], params["out.bias"])


@torch.no_grad()
def _load_member(model: PlaygroundNet, params: dict, grads: dict | None, i: int) -> None:
    """Member i's weights (and last gradients) into its own net, which its snapshots measure."""
    for name, p in model.named_parameters():
        p.copy_(params[name][i])
        p.grad = None if grads is None else grads[name][i].to(p.dtype)
