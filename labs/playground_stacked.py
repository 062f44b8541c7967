"""Chapter 2's runs trained stacked (labs/core/stacked.py): configs of one shape, of one
learner or many, as one loop; each member's snapshots and weights those of its run alone. A
lone run of a plain MLP trains this way too (labs/playground.py `train`)."""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import replace

import torch
from torch.nn import functional as F

from labs.core import stacked
from labs.core.config import check
from labs.core.control import log, steps
from labs.core.divergence import LossWatch
from labs.core.hooks import record_activations
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict
from labs.playground import Config, PlaygroundNet, _prepare, _snapshot


def train_together(cfgs: list[Config], device: torch.device):
    """Train configs of one shape (`stacking_key`) as one stacked run (labs/core/stacked.py),
    yielding (member, snapshot): each member's snapshots at its own cadence, and its final
    weights, those its run alone makes up to float64 rounding (a lone run trains this way too:
    a stack of one)."""
    for cfg in cfgs:
        check(cfg)
    first = cfgs[0]
    runs = [_prepare(cfg, device) for cfg in cfgs]
    params = stacked.stack_params([r.model for r in runs])
    weights = [name for name in params if name.endswith("weight")]
    l1 = [c.reg_rate if c.regularization == "L1" else 0.0 for c in cfgs]
    l2 = [c.reg_rate if c.regularization == "L2" else 0.0 for c in cfgs]
    opt = stacked.StackedOptimizer(params, first.optimizer, [c.learning_rate for c in cfgs])
    F_train = torch.stack([r.probe.train[0] for r in runs]).to(stacked.DTYPE)  # (M, N, features)
    t_train = torch.stack([r.probe.train[1] for r in runs]).to(stacked.DTYPE)  # (M, N)
    rows = torch.arange(len(runs), device=device)[:, None]
    n = F_train.shape[1]
    per_epoch = math.ceil(n / min(first.batch_size, n))
    total = first.epochs * per_epoch
    cadences = [Cadence(total, max_snaps=80, min_seconds=0.05) for _ in runs]
    watches = [LossWatch() for _ in runs]
    step = 0
    with ExitStack() as hooks:
        probes = [
            replace(r.probe, latest=hooks.enter_context(record_activations(r.probe.acts))) for r in runs
        ]
        for step in steps(total):  # ends early on Stop
            if (step - 1) % per_epoch == 0:  # each member shuffles with its own generator
                order = torch.stack([torch.randperm(n, generator=r.generator).to(device) for r in runs])
            batch = order[:, ((step - 1) % per_epoch) * first.batch_size :][:, : first.batch_size]
            logits = _stacked_forward(params, F_train[rows, batch], first).squeeze(-1)  # (M, B)
            targets = t_train[rows, batch]
            losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1)
            penalty = stacked.weight_penalty(params, weights, l1, l2)
            grads = dict(zip(params, torch.autograd.grad(losses.sum() + penalty, list(params.values()))))
            opt.step(grads)
            log(step, train_loss=losses[0])
            for i, run in enumerate(runs):
                if cadences[i].due(step):
                    watches[i].check(step, loss=losses[i])
                    _load_member(run.model, params, grads, i)
                    yield i, _snapshot(run.model, probes[i], cfgs[i], step, total)
    for i, run in enumerate(runs):
        _load_member(run.model, params, None, i)
        yield i, Snapshot(step, total, final=True, state_dict=cpu_state_dict(run.model))


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
