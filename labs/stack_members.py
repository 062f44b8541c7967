"""Many learners' runs in one stack, as every chapter's stack drives them (the stacked math
itself is labs/stacked.py): `MemberStack`, members joining at the next step and leaving alone,
each with its own snapshots, divergence watch, Stop and budget; `SideBySide`, a comparison's
variants each a stack, merged as labs/core/compare.py merges them; and `load_member`, a
member's rows back into its own nn.Module.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from figures.variants import metric
from labs.core.compare import Variant, diverged, final_of, merged, took
from labs.core.config import check
from labs.core.control import Control, current
from labs.core.divergence import LossWatch
from labs.core.failures import Diverged
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict
from labs.stacked import DTYPE, StackedOptimizer, stack_params


@dataclass(eq=False, kw_only=True)
class StackMember:
    """One learner's run in a stack: its own Control (Stop, budget, curve points), snapshot
    cadence, divergence watch and step count, and its own nn.Module, which holds its weights
    at the end (and which its snapshots would measure, alone)."""

    key: object
    cfg: object
    control: Control
    cadence: Cadence
    model: nn.Module
    watch: LossWatch = field(default_factory=LossWatch)
    done: int = 0  # steps trained
    total: int = 0  # steps its run has (the stack's `_total`, read once)
    loss: float = float("nan")  # its last step's loss


class MemberStack:
    """What every chapter's stack does the same way: members join at the next step (their
    rows appended, nobody else restarts) and leave when their run ends, at their last step, on
    Stop or their budget (their Control, as `steps()` hears it), or diverging; each member's
    snapshots at its own cadence, the due ones measured in one pass, sharing the stack's time.

    A chapter's stack says what makes a key (`key_of`), how a member starts (`_member`: its
    StackMember, its net initialised as its run alone starts it), its data rows (`_data_rows`,
    `_keep_data`), one training step of every member (`_train_step`: each member's loss and the
    stacked gradients), and how due members are measured (`_measure`)."""

    SNAP_SHARE = 3  # a member waits 3x the snapshots of all members: measuring stays <= ~1/4
    MIN_SNAP_SECONDS = 0.05  # a member's snapshots, as a run's alone
    ALONE = "this run trains alone, not in a stack"  # why key_of said None, in words

    def __init__(self, device: torch.device):
        self.device = device
        self.members: list = []
        self.key: tuple | None = None
        self.params: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}  # BatchNorm's running statistics, stacked
        self.opt: StackedOptimizer | None = None
        self.worst: torch.Tensor | None = None  # (M,) each member's worst |loss| so far
        self.snap_seconds = 0.0  # what one member's snapshot costs, a moving average

    # -- what a chapter's stack provides ---------------------------------------------------------
    def key_of(self, cfg) -> tuple | None:
        raise NotImplementedError

    def _member(self, key, cfg, control: Control) -> StackMember:
        raise NotImplementedError

    def _optimizer(self, cfg) -> tuple[str, float]:
        """(the StackedOptimizer's kind, the member's learning rate)."""
        raise NotImplementedError

    def _data_rows(self, m: StackMember) -> None:
        """Append the new member's data rows (it is the last member now)."""

    def _keep_data(self, rows: torch.Tensor) -> None:
        """Keep only the data rows of the members at `rows`."""

    def _train_step(self) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def _measure(self, members: list, params: dict, grads: dict) -> list[Snapshot]:
        raise NotImplementedError

    def _total(self, m: StackMember) -> int:
        raise NotImplementedError

    def per_second(self) -> float | None:
        """Steps a second the members watch their runs at (the same for one key), as
        `steps(total, per_second)` paces a run alone; None: full speed. The batch's driver
        waits between steps (labs/core/stackdrive.py), a stack driven directly never does."""
        return None

    # -- the same for every stack ---------------------------------------------------------------
    def add(self, key, cfg, control: Control | None = None) -> None:
        """A run joins: it trains from the next step, under `control` (this thread's if none)."""
        check(cfg)
        mine = self.key_of(cfg)
        if mine is None:  # this loop would silently drop what it lacks
            raise ValueError(self.ALONE)
        if self.members and mine != self.key:
            raise ValueError("a run of another shape cannot join this stack")
        m = self._member(key, cfg, control or current())
        self.members.append(m)
        self.key = mine
        self._data_rows(m)
        m.total = self._total(m)
        for name, buffer in _running_stats(m.model).items():
            self.buffers[name] = _appended(self.buffers.get(name), buffer[None].to(DTYPE))
        self.worst = _appended(self.worst, torch.zeros(1, dtype=DTYPE, device=self.device))
        kind, rate = self._optimizer(cfg)
        if self.opt is None:  # the optimizer holds the stacked parameters
            self.opt = StackedOptimizer(stack_params([m.model]), kind, [rate])
        else:
            self.opt.add_members(stack_params([m.model]), [rate])
        self.params = self.opt.params

    def step(self) -> list[tuple[object, object]]:
        """One training step for every member; returns (key, snapshot or exception) for what
        the members made: snapshots due, and the final snapshot of each run that ended."""
        ending = [m for m in self.members if self._must_end(m)]  # before their next step
        out = [(m.key, self._final(m)) for m in ending]
        self._remove(ending)
        if not self.members:
            return out
        # the members' snapshots share the stack's time: together at most ~1/4 of it
        apart = self.SNAP_SHARE * self.snap_seconds * len(self.members)
        for m in self.members:
            m.cadence.min_seconds = max(self.MIN_SNAP_SECONDS, apart)
        losses, grads = self._train_step()
        self.worst = torch.maximum(self.worst, losses.abs())  # NaN wins, as LossWatch.see's
        values, worst = torch.stack([losses, self.worst]).tolist()  # one read for all members
        due = [row for row, m in enumerate(self.members) if self._count_step(m, values[row])]
        if due:  # members nearly due are measured in the same pass (Cadence.along)
            due += [row for row, m in enumerate(self.members) if row not in due and m.cadence.along(m.done)]
        ended: list[tuple[StackMember, object]] = []
        measured = []
        for row, m in enumerate(self.members):
            if row in due:
                try:
                    m.watch.check(m.done, loss=worst[row])
                except Diverged as err:  # this member leaves; the others train on
                    m.control.flush(m.done)
                    ended.append((m, err))
                    continue
                measured.append(row)
            if m.done == m.total:
                m.control.report(m.done, m.done)
                ended.append((m, None))
        if measured:
            out += self._snapshots(measured, grads)
        out += [(m.key, err if err is not None else self._final(m)) for m, err in ended]
        self._remove([m for m, _ in ended])
        return out

    @staticmethod
    def _count_step(m: StackMember, loss: float) -> bool:
        """A member's step is counted (its loss logged); says whether its snapshot is due."""
        m.done, m.loss = m.done + 1, loss
        m.control.log(m.done, {"train_loss": loss})
        return m.cadence.due(m.done)

    def _snapshots(self, rows: list[int], grads: dict) -> list[tuple[object, Snapshot]]:
        began = time.perf_counter()
        members = [self.members[row] for row in rows]
        index = torch.tensor(rows, device=self.device)
        state = {name: p.detach()[index] for name, p in (self.params | self.buffers).items()}
        snaps = self._measure(members, state, {n: g[index] for n, g in grads.items()})
        each = (time.perf_counter() - began) / len(rows)
        self.snap_seconds = 0.8 * self.snap_seconds + 0.2 * each
        return [(m.key, snap) for m, snap in zip(members, snaps)]

    def _must_end(self, m: StackMember) -> bool:
        """As `steps()` asks before each step: Stop, the time or memory budget."""
        m.control.report(m.done, m.total)
        return bool(m.control.should_end())

    def _final(self, m: StackMember) -> Snapshot:
        """The member's last snapshot, with its weights (its rows are still in the stack)."""
        m.control.flush(m.done)
        load_member(m.model, self.params | self.buffers, None, self.members.index(m), m.done)
        return Snapshot(m.done, m.total, final=True, state_dict=cpu_state_dict(m.model))

    def drop(self, key) -> None:
        """Take the member of `key` out, making nothing (its run failed elsewhere)."""
        self._remove([m for m in self.members if m.key == key])

    def _remove(self, leaving: list) -> None:
        """Take these members' rows out of the stack; the others go on where they were."""
        if not leaving:
            return
        keep = [row for row, m in enumerate(self.members) if m not in leaving]
        self.members = [self.members[row] for row in keep]
        rows = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.opt.keep_members(rows)
        self.params = self.opt.params
        self.buffers = {name: b[rows] for name, b in self.buffers.items()}
        self.worst = self.worst[rows]
        self._keep_data(rows)


class SideBySide:
    """Side-by-side runs (labs/core/compare.py) stacked: one stack per variant (`stack_of`),
    each run a member of each, all stepping together (the lockstep side_by_side keeps), and each
    run's snapshots merged as side_by_side merges them: metrics, layers and curves under the
    variant's name, every variant's status, a variant that diverged dropping out with a note
    while the others carry on, and at the end {variant: weights}."""

    def __init__(
        self,
        device: torch.device,
        variants_of: Callable[[object], dict[str, object]],
        stack_of: Callable[[torch.device, object], MemberStack],
        key_of: Callable[[object], tuple | None],
    ):
        self.device, self.variants_of, self.stack_of, self.key_of = device, variants_of, stack_of, key_of
        self.stacks: dict[str, MemberStack] = {}  # by variant name
        self.runs: dict[object, tuple[Control, dict[str, Variant]]] = {}
        self.key: tuple | None = None

    @property
    def members(self) -> list:
        return list(self.runs)

    def per_second(self) -> float | None:
        return None  # a comparison is watched as its variants' curves, at full speed

    def add(self, key, cfg, control: Control | None = None) -> None:
        """A run joins: each of its variants joins its variant's stack at the next step."""
        control = control or current()
        mine = self.key_of(cfg)
        if mine is None:
            raise ValueError("this run trains alone, not in a stack")
        if self.runs and mine != self.key:
            raise ValueError("a run of another shape cannot join this stack")
        variants, joined = self.variants_of(cfg), []
        try:
            for name, variant in variants.items():
                if name not in self.stacks:
                    self.stacks[name] = self.stack_of(self.device, variant)
                self.stacks[name].add(key, cfg, _VariantControl(control, metric(name, "")))
                joined.append(self.stacks[name])
        except Exception:  # a variant's settings refused: the run joins none
            for stack in joined:
                stack.drop(key)
            raise
        self.key = mine
        self.runs[key] = (control, {name: Variant(name) for name in variants})

    def step(self) -> list[tuple[object, object]]:
        """One step of every variant of every run; (key, merged snapshot, the run's final
        snapshot once all its variants ended, or the exception that failed it)."""
        out = []
        for name, stack in self.stacks.items():
            if stack.members:
                for key, item in stack.step():
                    if key in self.runs:
                        out += self._heard(key, name, item)
        return out

    def _heard(self, key, name: str, item) -> list[tuple[object, object]]:
        control, variants = self.runs[key]
        run = variants[name]
        if isinstance(item, Diverged):
            snap = diverged(run, item)
        elif isinstance(item, BaseException):  # not the lesson: the whole run fails
            for stack in self.stacks.values():
                stack.drop(key)
            del self.runs[key]
            return [(key, item)]
        else:
            snap = item
            took(run, snap, control)
        out = [(key, merged(list(variants.values()), run, snap))]
        if all(v.done for v in variants.values()):
            del self.runs[key]
            out.append((key, final_of(list(variants.values()))))
        return out


class _VariantControl:
    """A variant's view of its run's Control: what it logs goes under the variant's name (as
    side_by_side's `prefixed`); Stop, the budget and the progress are the run's."""

    def __init__(self, control: Control, prefix: str):
        self.control, self.prefix = control, prefix

    def log(self, step: int, values: dict) -> None:
        self.control.log(step, {self.prefix + name: value for name, value in values.items()})

    def report(self, done: int, total: int) -> None:
        self.control.report(done, total)

    def flush(self, step: int | None = None) -> None:
        self.control.flush(step)

    def should_end(self):
        return self.control.should_end()


def _appended(stack: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
    """`rows` appended to `stack` along the member dimension."""
    return rows if stack is None else torch.cat([stack, rows])


def _running_stats(model: nn.Module) -> dict[str, torch.Tensor]:
    """The buffers a stack keeps per member (BatchNorm's running mean and variance; its count
    of batches is the member's step count)."""
    return {n: b.detach() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")}


@torch.no_grad()
def load_member(model: nn.Module, state: dict, grads: dict | None, i: int, steps: int | None = None) -> None:
    """Member i's weights (and last gradients, and running statistics with `steps` trained)
    into its own net, as its module holds them."""
    for name, p in model.named_parameters():
        p.copy_(state[name][i])
        p.grad = None if grads is None else grads[name][i].to(p.dtype)
    for name, b in model.named_buffers():
        if name in state:
            b.copy_(state[name][i])
        elif name.endswith("num_batches_tracked") and steps is not None:
            b.fill_(steps)
