"""The deep MLP on digits (labs/core/mlp.py train_digits: chapter 4's run, and each variant of
chapter 5's) trained stacked (labs/stacked.py), with its norms (BatchNorm by each member's own
batch, with its own running statistics; LayerNorm) and skips: when a class presses Train
together, runs of one shape train as one loop, each member with its own seed (its data split,
start and shuffling), initialization and learning rate; each member's snapshots and weights
those of its run alone, whatever else the stack holds (tests/test_stacked.py). On a server the
runner trains these chapters' runs here, as batches (labs/core/batches.py), a lone learner's as
a batch of one.

Members of one seed share one copy of the digits: the stack gathers every member's batch from
the sets it holds in one indexing operation, so a class on the default seed costs one data set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch.nn import functional as F

from labs import stack_members, stacked
from labs.core import mlp
from labs.core.control import Control
from labs.core.device import seed_everything
from labs.core.divergence import EXPLODES, LossWatch
from labs.core.snapshot import Cadence, Snapshot

STACKED_ACTIVATIONS = {  # labs/core/mlp.py ACTIVATIONS, as functions of a stacked tensor
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": partial(F.leaky_relu, negative_slope=0.01),
    "gelu": F.gelu,
}


BN_EPS, BN_MOMENTUM, LN_EPS = 1e-5, 0.1, 1e-5  # nn.BatchNorm1d's and nn.LayerNorm's defaults


def stacking_key(r: mlp.Recipe) -> tuple:
    """What runs must share to train in one stack: the net's and the loop's shapes, and pace."""
    return (r.depth, r.width, r.activation, r.norm, r.residual, r.batch_size, r.steps, r.per_second)


@dataclass(eq=False, kw_only=True)
class _Member(stack_members.StackMember):
    recipe: mlp.Recipe
    generator: torch.Generator  # its shuffling, as its run alone draws it
    data: int  # which of the stack's digit sets is its seed's


class Stack(stack_members.MemberStack):
    """Deep MLP runs of one shape (`stacking_key` of their recipe) training as one; `recipe_of`
    maps a chapter's Config onto labs/core/mlp.py's Recipe."""

    def __init__(self, device: torch.device, recipe_of: Callable[[object], mlp.Recipe]):
        super().__init__(device)
        self.recipe_of = recipe_of
        self.seeds: list[int] = []  # the seed of each digit set held
        self.sets: list[tuple[torch.Tensor, ...]] = []  # (X_train, y_train, X_test, y_test) each
        self.train_x = self.train_y = None  # (sets, N, 784), (sets, N): every set held
        self.data_of = self.order = None  # (M,) each member's set; (M, N) its epoch's shuffle

    def key_of(self, cfg) -> tuple | None:
        return stacking_key(self.recipe_of(cfg))

    def per_second(self) -> float | None:
        return self.members[0].recipe.per_second  # one key, one pace

    def _member(self, key, cfg, control: Control) -> _Member:
        r = self.recipe_of(cfg)
        g = seed_everything(r.seed)  # as train_digits starts: the seed, its data, then its net
        data = self._digits(r.seed)
        model = mlp.build(r).to(self.device)
        return _Member(
            key=key,
            cfg=cfg,
            control=control,
            cadence=Cadence(r.steps, max_snaps=60, min_seconds=self.MIN_SNAP_SECONDS),
            model=model,
            watch=LossWatch(explode=EXPLODES),
            recipe=r,
            generator=g,
            data=data,
        )

    def _digits(self, seed: int) -> int:
        """The index of `seed`'s digit set in the stack, loaded if no member holds it yet."""
        if seed not in self.seeds:
            self.seeds.append(seed)
            X_train, y_train, X_test, y_test = mlp.digits(seed, device=self.device)
            self.sets.append((X_train.flatten(1), y_train, X_test.flatten(1), y_test))  # as DeepMLP sees them
            self.train_x = torch.stack([s[0] for s in self.sets])
            self.train_y = torch.stack([s[1] for s in self.sets])
        return self.seeds.index(seed)

    def _optimizer(self, cfg) -> tuple[str, float]:
        return "momentum", self.recipe_of(cfg).learning_rate  # train_digits' SGD, momentum 0.9

    def _data_rows(self, m: _Member) -> None:
        n = self.train_x.shape[1]
        mine = torch.tensor([m.data], device=self.device)
        self.data_of = mine if self.data_of is None else torch.cat([self.data_of, mine])
        row = torch.arange(n, device=self.device)[None]
        self.order = row if self.order is None else torch.cat([self.order, row])

    def _keep_data(self, rows: torch.Tensor) -> None:
        self.data_of, self.order = self.data_of[rows], self.order[rows]

    def _train_step(self) -> tuple[torch.Tensor, dict]:
        members, r = self.members, self.members[0].recipe
        n, size = self.train_x.shape[1], r.batch_size
        per_epoch = max(1, n // size)  # labs/core/mlp.py shuffled_batches: whole batches only
        for row, m in enumerate(members):  # each member shuffles with its own generator
            if m.done % per_epoch == 0:
                self.order[row] = torch.randperm(n, generator=m.generator).to(self.device)
        start = torch.tensor([(m.done % per_epoch) * size for m in members], device=self.device)
        rows = torch.arange(len(members), device=self.device)[:, None]
        batch = self.order[rows, start[:, None] + torch.arange(size, device=self.device)]  # (M, B)
        sets = self.data_of[:, None]
        x = self.train_x[sets, batch].to(stacked.DTYPE)
        logits = forward(self.params, x, r, running=self.buffers)  # (M, B, 10)
        each = F.cross_entropy(logits.flatten(0, 1), self.train_y[sets, batch].flatten(), reduction="none")
        losses = each.view(len(members), size).mean(1)
        grads = dict(zip(self.params, torch.autograd.grad(losses.sum(), list(self.params.values()))))
        self.opt.step(grads)
        return losses.detach(), grads

    def _measure(self, members: list[_Member], params: dict, grads: dict) -> list[Snapshot]:
        return snapshots_together(members, params, grads, [self.sets[m.data] for m in members])

    def _total(self, m: _Member) -> int:
        return m.recipe.steps


@torch.no_grad()
def snapshots_together(
    members: list[_Member], params: dict, grads: dict, sets: list[tuple[torch.Tensor, ...]]
) -> list[Snapshot]:
    """labs/core/mlp.py `_snapshot` for several members in one pass: their nets (`params`,
    `grads`: (D, ...) rows in member order) measured on their own probe images and test set,
    each member's numbers as its net alone would give them (float32, as its nn.Module holds
    its weights). Its `train_loss` is its last step's, as the member logged it."""
    r = members[0].recipe
    weights = {name: p.float() for name, p in params.items()}
    probe = torch.stack([s[0][: mlp.PROBE] for s in sets])  # (D, PROBE, 784)
    test_x, test_y = torch.stack([s[2] for s in sets]), torch.stack([s[3] for s in sets])
    acts, _ = recorded_forward(weights, probe, r)
    test_logits = forward(weights, test_x, r)  # (D, T, 10)
    own_grads = {  # each block's Linear, as labs/core/mlp.py recorded_layers has it
        f"layer {i + 1}": [grads[f"blocks.{i}.linear.weight"], grads[f"blocks.{i}.linear.bias"]]
        for i in range(r.depth)
    }
    layers = stacked.layer_stats_together(acts, own_grads, mlp.HIST_RANGE[r.activation])
    test_loss = F.cross_entropy(test_logits.transpose(1, 2), test_y, reduction="none").mean(1)
    test_acc = (test_logits.argmax(2) == test_y).float().mean(1)
    numbers = torch.stack([test_loss, test_acc], dim=1).tolist()
    snaps = []
    for i, m in enumerate(members):
        norms = [stats["grad_rms"] for stats in layers[i].values()]
        distinct = [mlp.distinct_rows(weights[f"blocks.{j}.linear.weight"][i]) for j in range(r.depth)]
        metrics = {
            "train_loss": m.loss,
            "test_loss": numbers[i][0],
            "test_acc": numbers[i][1],
            "first/last gradient": norms[0] / max(norms[-1], 1e-30),
        }
        snaps.append(Snapshot(m.done, r.steps, metrics, layers[i], view={"distinct_units": distinct}))
    return snaps


def recorded_forward(
    state: dict, x: torch.Tensor, r: mlp.Recipe, running: dict | None = None
) -> tuple[dict, torch.Tensor]:
    """DeepMLP's forward for every member at once, keeping each block's output: x (M, B, 784)
    -> ({"layer i": (M, B, width)}, logits (M, B, 10)). `running`: a training step's (BatchNorm
    normalizes by each member's batch and updates these running statistics); None: a
    measurement, as the module in eval mode (by the running statistics in `state`)."""
    act, acts = STACKED_ACTIVATIONS[r.activation], {}
    for i in range(r.depth):
        block = f"blocks.{i}"
        weight, bias = state[f"{block}.linear.weight"], state[f"{block}.linear.bias"]
        if r.residual and i > 0:  # the first block changes the width: never residual
            x = x + stacked.linear(act(_norm(x, state, block, r.norm, running)), weight, bias)
        else:
            x = act(_norm(stacked.linear(x, weight, bias), state, block, r.norm, running))
        acts[f"layer {i + 1}"] = x
    return acts, stacked.linear(x, state["head.weight"], state["head.bias"])


def _norm(x: torch.Tensor, state: dict, block: str, kind: str, running: dict | None) -> torch.Tensor:
    """Block's LayerNorm or BatchNorm1d for every member: x (M, B, units)."""
    if kind == "none":
        return x
    weight, bias = state[f"{block}.norm.weight"], state[f"{block}.norm.bias"]
    if kind == "layer":
        return F.layer_norm(x, x.shape[-1:], eps=LN_EPS) * weight[:, None] + bias[:, None]
    # BatchNorm: each (member, unit) a channel of its own, so torch's one fused kernel
    # normalizes every member by its own batch and keeps its own running statistics
    members, size, units = x.shape
    stats = running if running is not None else state
    mean, var = (stats[f"{block}.norm.running_{s}"].view(-1) for s in ("mean", "var"))
    flat = x.transpose(0, 1).reshape(size, members * units)
    out = F.batch_norm(
        flat, mean, var, weight.reshape(-1), bias.reshape(-1), running is not None, BN_MOMENTUM, BN_EPS
    )
    return out.view(size, members, units).transpose(0, 1)


def forward(state: dict, x: torch.Tensor, r: mlp.Recipe, running: dict | None = None) -> torch.Tensor:
    return recorded_forward(state, x, r, running)[1]
