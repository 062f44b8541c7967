"""Chapter 6's runs for many learners at once (labs/regularization.py `train_one`, each of its two
variants a stack: labs/stacked.py SideBySide): when a class presses Train together, runs of one
shape (training images, width, depth, batch size, epochs) train as one loop. Each member keeps
its own seed (its images, noisy labels, start and shuffling), learning rate, weight decay,
dropout, augmentation and early stopping; its dropout masks and augmentations are drawn from its
own generator, so a member's run is its run alone (a stack of one), whatever else the stack
holds. Each member is measured after every epoch, as alone: members that end an epoch at the
same step in one pass.

Members at other points of their epochs share a step: an epoch's last, shorter batch is padded
and masked, as the playground's stack does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from labs import regularization as reg
from labs import stacked
from labs.core import mlp
from labs.core.control import Control
from labs.core.device import seed_everything
from labs.core.failures import Diverged
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict


def stacking_key(cfg: reg.Config) -> tuple:
    """What runs must share to train in one stack: the net's and the loop's shapes."""
    return (cfg.train_size, cfg.width, cfg.depth, cfg.batch_size, cfg.epochs)


@dataclass(eq=False, kw_only=True)
class _Member(stacked.StackMember):
    generator: torch.Generator  # its shuffles, noisy labels, augmentations and dropout masks
    data: int  # which of the stack's digit sets is its seed's
    labels: torch.Tensor  # its training labels, some replaced by its label noise
    view: dict = field(default_factory=dict)
    epoch: int = 0  # the epoch it is in (or ended last)
    batch: int = 0  # its next batch within that epoch
    order: torch.Tensor | None = None  # this epoch's shuffle
    best: tuple = (math.inf, 0, None)  # (validation loss, epoch, weights kept for early stopping)


class Stack(stacked.MemberStack):
    """One variant of chapter 6's runs (`cfg_of` maps a run's settings onto the variant's:
    regularization.unregularized for the baseline)."""

    def __init__(self, device: torch.device, cfg_of: Callable[[reg.Config], reg.Config]):
        super().__init__(device)
        self.cfg_of = cfg_of
        self.seeds: list[int] = []
        self.sets: list[tuple[torch.Tensor, ...]] = []  # (X_train, y_train, X_val, y_val)

    def add(self, key, cfg, control: Control | None = None) -> None:
        super().add(key, self.cfg_of(cfg), control)

    def key_of(self, cfg) -> tuple:
        return stacking_key(cfg)

    def _member(self, key, cfg: reg.Config, control: Control) -> _Member:
        g = seed_everything(cfg.seed)  # as train_one starts: the seed, its data, labels, net
        data = self._digits(cfg)
        X_train, y_train, _, _ = self.sets[data]
        labels = reg.with_label_noise(y_train, cfg.label_noise, g)
        view = {"samples": reg._augmented_samples(X_train, cfg, g), "weight_range": reg.WEIGHT_RANGE}
        return _Member(
            key=key,
            cfg=cfg,
            control=control,
            cadence=Cadence(cfg.epochs, max_snaps=60, min_seconds=self.MIN_SNAP_SECONDS),
            model=reg.build_model(cfg).to(self.device),
            generator=g,
            data=data,
            labels=labels,
            view=view,
        )

    def _digits(self, cfg: reg.Config) -> int:
        if cfg.seed not in self.seeds:
            self.seeds.append(cfg.seed)
            X_train, y_train, X_val, y_val = mlp.digits(cfg.seed, cfg.train_size, self.device)
            self.sets.append((X_train, y_train, X_val[: reg.VALIDATION], y_val[: reg.VALIDATION]))
        return self.seeds.index(cfg.seed)

    def _optimizer(self, cfg: reg.Config) -> tuple[str, float]:
        return "momentum", cfg.learning_rate

    def _decay(self, cfg: reg.Config) -> float:
        return cfg.weight_decay

    def _total(self, m: _Member) -> int:
        return m.cfg.epochs

    # -- a step: every member's next batch ---------------------------------------------------
    def step(self) -> list[tuple[object, object]]:
        ending = [m for m in self.members if self._must_end(m)]  # Stop, or the budget
        out = [(m.key, self._final(m)) for m in ending]
        self._remove(ending)
        if not self.members:
            return out
        losses, per_epoch = self._train_step(), self._per_epoch()
        ended = []
        for m, loss in zip(self.members, losses.tolist()):
            m.control.log(m.epoch - 1 + (m.batch + 1) / per_epoch, {"train_loss": loss})  # in epochs
            m.batch = (m.batch + 1) % per_epoch
        finished = [m for m in self.members if m.batch == 0]  # an epoch ended: measured now
        if finished:
            for m, made in zip(finished, self._epochs_ended(finished)):
                out += [(m.key, item) for item in made]
                if made and (isinstance(made[-1], Diverged) or made[-1].final):
                    ended.append(m)
        self._remove(ended)
        return out

    def _must_end(self, m: _Member) -> bool:
        m.control.report(m.epoch - (m.batch > 0), m.cfg.epochs)  # epochs done, as steps() says
        return bool(m.control.should_end())

    def _per_epoch(self) -> int:
        cfg = self.members[0].cfg
        return math.ceil(cfg.train_size / cfg.batch_size)

    def _train_step(self) -> torch.Tensor:
        """Each member's next batch (its epoch's shuffle, its augmentation, its dropout masks,
        all from its generator), one stacked pass and update. Returns each member's loss."""
        size, n = self.members[0].cfg.batch_size, self.members[0].cfg.train_size
        inputs, targets, real, masks = [], [], [], []
        for m in self.members:
            if m.batch == 0:  # a new epoch: a fresh shuffle
                m.epoch += 1
                m.order = torch.randperm(n, generator=m.generator).to(self.device)
            batch = m.order[m.batch * size : (m.batch + 1) * size]
            X_train = self.sets[m.data][0]
            x = reg.augment(X_train[batch], m.cfg.augment, m.generator) if m.cfg.augment else X_train[batch]
            pad = size - len(batch)  # an epoch's last batch may be short
            inputs.append(F.pad(x.flatten(1), (0, 0, 0, pad)))
            targets.append(F.pad(m.labels[batch], (0, pad)))
            real.append(torch.arange(size, device=self.device) < len(batch))
            masks.append([self._dropout_mask(m, len(batch), pad) for _ in range(m.cfg.depth)])
        real_rows = torch.stack(real).to(stacked.DTYPE)  # (M, B)
        masks_by_layer = [torch.stack(layer) for layer in zip(*masks)]  # depth x (M, B, width)
        logits = forward(self.params, torch.stack(inputs).to(stacked.DTYPE), masks_by_layer)
        each = F.cross_entropy(logits.transpose(1, 2), torch.stack(targets), reduction="none")
        losses = (each * real_rows).sum(1) / real_rows.sum(1)
        grads = dict(zip(self.params, torch.autograd.grad(losses.sum(), list(self.params.values()))))
        self.opt.step(grads)
        return losses.detach()

    def _dropout_mask(self, m: _Member, rows: int, pad: int) -> torch.Tensor | None:
        """One layer's dropout for the member's batch: kept units scaled by 1/(1-p), as
        nn.Dropout does (ones without dropout: no draw, as the net alone has no Dropout)."""
        p, width = m.cfg.dropout, m.cfg.width
        if p == 0:
            return torch.ones(rows + pad, width, dtype=stacked.DTYPE, device=self.device)
        kept = (torch.rand(rows, width, generator=m.generator) >= p).to(stacked.DTYPE) / (1 - p)
        return F.pad(kept.to(self.device), (0, 0, 0, pad))

    # -- an epoch ended: evaluation, early stopping, snapshots ------------------------------
    @torch.no_grad()
    def _epochs_ended(self, finished: list[_Member]) -> list[list]:
        """regularization.train_one's end of an epoch, for members that ended one at this
        step, measured in one pass: what each made (snapshots; its last: final or Diverged)."""
        rows = torch.tensor([self.members.index(m) for m in finished], device=self.device)
        weights = {name: p.detach()[rows].float() for name, p in self.params.items()}
        sets = [self.sets[m.data] for m in finished]
        numbers = []
        for X, y in (
            (torch.stack([s[0] for s in sets]), torch.stack([m.labels for m in finished])),
            (torch.stack([s[2] for s in sets]), torch.stack([s[3] for s in sets])),
        ):
            logits = forward(weights, X.flatten(2))
            loss = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1)
            numbers += [loss, (logits.argmax(2) == y).float().mean(1)]
        numbers = torch.stack(numbers, 1).tolist()
        made = []
        for m, (train_loss, train_acc, val_loss, val_acc) in zip(finished, numbers):
            metrics = {
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
            }
            made.append(self._epoch_end(m, metrics | {"gap": val_loss - train_loss}))
        return made

    def _epoch_end(self, m: _Member, metrics: dict) -> list:
        try:
            m.watch.check(m.epoch, loss=metrics["train_loss"])
        except Diverged as err:
            m.control.flush(m.epoch)
            return [err]
        row = self.members.index(m)
        stacked.load_member(m.model, self.params, None, row)  # its module: histograms, weights
        if metrics["val_loss"] < m.best[0]:
            m.best = (metrics["val_loss"], m.epoch, cpu_state_dict(m.model) if m.cfg.patience else None)
        m.view["best_epoch"] = m.best[1]
        stopping = m.cfg.patience and m.epoch - m.best[1] >= m.cfg.patience
        if stopping:  # keep the weights of the best epoch, as early stopping means to
            m.model.load_state_dict(m.best[2])
            m.view["ended"] = f"early-stopped at epoch {m.epoch}, kept epoch {m.best[1]}"
            m.view["stopped_epoch"] = m.epoch
        made = []
        if m.cadence.due(m.epoch) or stopping:
            weights = reg.weight_histograms(m.model)
            made.append(Snapshot(m.epoch, m.cfg.epochs, metrics, view={**m.view, "weights": weights}))
            m.view.pop("samples", None)  # sent once
        if stopping or m.epoch == m.cfg.epochs:
            m.control.report(m.epoch, m.cfg.epochs)
            made.append(self._final(m, loaded=True))
        return made

    def _final(self, m: _Member, loaded: bool = False) -> Snapshot:
        m.control.flush(m.epoch)
        if not loaded:  # its rows hold its weights (after early stopping, its module does)
            stacked.load_member(m.model, self.params, None, self.members.index(m))
        return Snapshot(m.epoch, m.cfg.epochs, final=True, state_dict=cpu_state_dict(m.model), view=m.view)


def forward(weights: dict, x: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
    """regularization.build_model's net for every member: x (M, B, 784) -> (M, B, 10); with a
    training step's dropout `masks` (one (M, B, width) per hidden layer), without when measured."""
    depth = sum(1 for name in weights if name.endswith("linear.weight"))
    for i in range(depth):
        x = torch.relu(
            stacked.linear(x, weights[f"blocks.{i}.linear.weight"], weights[f"blocks.{i}.linear.bias"])
        )
        if masks is not None:
            x = x * masks[i]
    return stacked.linear(x, weights["head.weight"], weights["head.bias"])


def _same(cfg: reg.Config) -> reg.Config:
    return cfg


def _variant_stack(device: torch.device, variant: str) -> Stack:
    return Stack(device, reg.unregularized if variant == reg.BASELINE else _same)


def side_by_side_stack(device: torch.device) -> stacked.SideBySide:
    """Chapter 6's runs as the runner batches them: the baseline and the regularized net, each
    a stack, each run a member of both, merged as side_by_side merges them."""
    return stacked.SideBySide(
        device,
        variants_of=lambda cfg: {reg.BASELINE: reg.BASELINE, reg.REGULARIZED: reg.REGULARIZED},
        stack_of=_variant_stack,
        key_of=stacking_key,
    )
