"""Chapter 3's race on a real net (labs/optimizers.py `train`) for many learners at once: when a
class presses Train together, the races of one shape (the same racers, steps, batch size and
width) train as one loop. Every racer of every race is a row of one stacked forward and backward
pass; each racer keeps its own torch optimizer and learning-rate schedule, so its rule (SGD,
Nesterov, RMSprop, Adam, AdamW, one-cycle's momentum cycling included) is torch's own, with its
learner's learning rate, schedule, weight decay and seed. Each race's snapshots and weights are
those of its race alone, whatever else the stack holds (tests/test_stacked.py).

The racers' weights are float64 leaves, stacked for each pass: a batched matrix product sums in
another order when the number of rows changes, and float64 keeps that difference near 1e-16
(labs/stacked.py says why it matters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from labs import optimizers, stack_members, stacked
from labs.core.config import check
from labs.core.control import Control, current
from labs.core.device import seed_everything
from labs.core.snapshot import Cadence, Snapshot


def stacking_key(cfg: optimizers.Config) -> tuple:
    """What races must share to train as one: the racers, and the loop's and net's shapes."""
    return (tuple(cfg.optimizers), cfg.steps, cfg.batch_size, cfg.hidden)


@dataclass(eq=False)
class _Racer:
    name: str
    weights: dict[str, torch.Tensor]  # float64 leaves, named as the module's parameters
    opt: torch.optim.Optimizer
    schedule: object
    recent: list[float] = field(default_factory=list)  # its losses since the last snapshot


@dataclass(eq=False)
class _Race:
    key: object
    cfg: optimizers.Config
    control: Control
    cadence: Cadence
    generator: torch.Generator  # its batches, as its race alone draws them
    data: int  # which of the stack's digit sets is its seed's
    racers: list[_Racer]
    planned: dict  # the schedule drawn before the run, sent with its first snapshot
    done: int = 0


class Stack:
    """Races of one shape (`stacking_key`) training as one: races join at the next step and
    leave when they end (their last step, Stop or their budget)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.members: list[_Race] = []
        self.key: tuple | None = None
        self.seeds: list[int] = []
        self.sets: list[tuple[torch.Tensor, ...]] = []  # (X_train, y_train, X_test, y_test)

    def add(self, key, cfg: optimizers.Config, control: Control | None = None) -> None:
        check(cfg)
        if self.members and stacking_key(cfg) != self.key:
            raise ValueError("a run of another shape cannot join this stack")
        g = seed_everything(cfg.seed)  # as the race alone starts: the seed, its data, its net
        data = self._digits(cfg.seed)
        start = optimizers.build_model(cfg).to(self.device)
        racers = []
        for name in cfg.optimizers:
            weights = {n: p.detach().to(stacked.DTYPE).clone() for n, p in start.named_parameters()}
            weights = {n: w.requires_grad_(True) for n, w in weights.items()}
            opt = optimizers.make_optimizer(name, list(weights.values()), cfg.learning_rate, cfg.weight_decay)
            schedule = optimizers.make_scheduler(cfg.schedule, opt, cfg.steps, cfg.learning_rate)
            racers.append(_Racer(name, weights, opt, schedule))
        planned = {"planned_lr": optimizers.lr_curve(cfg.schedule, cfg.learning_rate, cfg.steps)}
        cadence = Cadence(cfg.steps, max_snaps=80, min_seconds=stack_members.MemberStack.MIN_SNAP_SECONDS)
        self.members.append(_Race(key, cfg, control or current(), cadence, g, data, racers, planned))
        self.key = stacking_key(cfg)

    def per_second(self) -> float | None:
        return None  # the race on a real net takes seconds: watched at full speed

    def _digits(self, seed: int) -> int:
        if seed not in self.seeds:
            self.seeds.append(seed)
            X, y, X_test, y_test = optimizers.digits_tensors(seed, self.device)
            self.sets.append((X.flatten(1), y, X_test.flatten(1), y_test))
        return self.seeds.index(seed)

    def step(self) -> list[tuple[object, Snapshot]]:
        """One step of every racer of every race; (key, snapshot) for what the races made."""
        ending = [race for race in self.members if self._must_end(race)]
        out = [(race.key, self._final(race)) for race in ending]
        self.members = [race for race in self.members if race not in ending]
        if not self.members:
            return out
        lr_now = [race.racers[0].opt.param_groups[0]["lr"] for race in self.members]  # before the step
        losses = self._train_step().tolist()
        due, ended, row = [], [], 0
        for race, lr in zip(self.members, lr_now):
            race.done += 1
            for racer in race.racers:
                racer.recent.append(losses[row])
                race.control.log(race.done, {f"{racer.name} loss": losses[row]})
                row += 1
            if race.cadence.due(race.done):
                due.append((race, lr))
            if race.done == race.cfg.steps:
                race.control.report(race.done, race.done)
                ended.append(race)
        if due:
            out += self._snapshots(due)
        out += [(race.key, self._final(race)) for race in ended]
        self.members = [race for race in self.members if race not in ended]
        return out

    def _must_end(self, race: _Race) -> bool:
        race.control.report(race.done, race.cfg.steps)
        return bool(race.control.should_end())

    def _train_step(self) -> torch.Tensor:
        """Every racer's step on its race's batch: one stacked pass, then each racer's own
        optimizer and schedule. Returns each racer's loss, race by race."""
        x, y = [], []
        for race in self.members:  # each race draws its batch with its own generator
            X, Y, _, _ = self.sets[race.data]
            batch = torch.randint(0, len(X), (race.cfg.batch_size,), generator=race.generator).to(self.device)
            x += [X[batch]] * len(race.racers)
            y += [Y[batch]] * len(race.racers)
        racers = [racer for race in self.members for racer in race.racers]
        weights = {n: torch.stack([r.weights[n] for r in racers]) for n in racers[0].weights}
        logits = _forward(weights, torch.stack(x).to(stacked.DTYPE))  # (rows, B, 10)
        each = F.cross_entropy(logits.transpose(1, 2), torch.stack(y), reduction="none").mean(1)
        for racer in racers:
            racer.opt.zero_grad(set_to_none=True)
        each.sum().backward()
        for racer in racers:
            racer.opt.step()
            racer.schedule.step()
        return each.detach()

    @torch.no_grad()
    def _snapshots(self, due: list[tuple[_Race, float]]) -> list[tuple[object, Snapshot]]:
        """optimizers.py `_race_metrics` for every due race in one pass over its test set."""
        racers = [(race, racer) for race, _ in due for racer in race.racers]
        weights = {n: torch.stack([r.weights[n].float() for _, r in racers]) for n in racers[0][1].weights}
        tests = torch.stack([self.sets[race.data][2] for race, _ in racers])
        labels = torch.stack([self.sets[race.data][3] for race, _ in racers])
        accuracy = (_forward(weights, tests).argmax(2) == labels).float().mean(1).tolist()
        out, row = [], 0
        for race, lr in due:
            metrics = {"lr": lr}
            for racer in race.racers:
                mean = sum(racer.recent) / max(len(racer.recent), 1)
                metrics[f"{racer.name} loss"] = mean if math.isfinite(mean) else float("nan")
                metrics[f"{racer.name} test acc"] = accuracy[row]
                racer.recent = []
                row += 1
            out.append((race.key, Snapshot(race.done, race.cfg.steps, metrics, view=race.planned)))
            race.planned = {}
        return out

    def _final(self, race: _Race) -> Snapshot:
        race.control.flush(race.done)
        weights = {
            racer.name: {n: w.detach().float().cpu().clone() for n, w in racer.weights.items()}
            for racer in race.racers
        }
        return Snapshot(race.done, race.cfg.steps, final=True, state_dict=weights)


def _forward(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """optimizers.build_model's net for every row at once: x (rows, B, 64) -> (rows, B, 10)."""
    hidden = torch.relu(stacked.linear(x, weights["1.weight"], weights["1.bias"]))
    return stacked.linear(hidden, weights["3.weight"], weights["3.bias"])
