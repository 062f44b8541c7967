"""Chapter 23's sweeps, each measured in one run so that only ratios matter, never this machine's
absolute speed:
- batch size: the training step alone (the digits already in memory), images/s from 8 images a
  step to the largest; small batches pay PyTorch's fixed cost per operation on few images, until
  the arithmetic itself takes over and the curve flattens;
- workers: the whole data path (the DataLoader, augmenting every image) at 0, 1, 2… workers, and
  the share of each step spent waiting for data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from labs import pipeline_data
from labs.core import budget
from labs.core.config import check, knob
from labs.core.control import steps
from labs.core.device import seed_everything
from labs.core.snapshot import Snapshot

SWEEPS = {"batch": "batch size (the step alone)", "workers": "num_workers (the whole data path)"}
WORKERS_BATCH = 64


@dataclass(frozen=True)
class SweepConfig:
    sweep: str = knob(
        "batch",
        "Sweep",
        "What changes from one measurement to the next.",
        choices=tuple(SWEEPS),
        labels=SWEEPS,
    )
    largest_batch: int = knob(
        512, "Largest batch", "Batch sizes 8, 16, … up to this.", lo=16, hi=2048, step=16
    )
    most_workers: int = knob(2, "Most workers", "num_workers 0, 1, … up to this.", lo=1, hi=8, step=1)
    augmentation: str = knob(
        "affine",
        "Augmentation",
        "What each image goes through as it is read (workers sweep).",
        choices=tuple(pipeline_data.AUGMENTATIONS),
        labels=pipeline_data.AUGMENTATIONS,
    )
    seconds: float = knob(
        1.0, "Seconds per point", "How long each setting is measured.", lo=0.2, hi=10.0, step=0.1
    )
    seed: int = knob(0, "Seed", "Same seed, same images.", lo=0, hi=9999, step=1)


def points(cfg: SweepConfig) -> list[int]:
    if cfg.sweep == "workers":
        return list(range(cfg.most_workers + 1))
    sizes = [8]
    while sizes[-1] * 2 <= cfg.largest_batch:
        sizes.append(sizes[-1] * 2)
    return sizes


def sweep_cost(cfg: SweepConfig) -> budget.Cost:
    """Time is set by the learner (seconds per point), so the cost is mostly waiting."""
    n = len(points(cfg))
    largest = cfg.largest_batch if cfg.sweep == "batch" else WORKERS_BATCH
    params = 6_000
    return budget.Cost(
        params,
        largest * 28 * 28 * 8 * 3,
        n,
        0.0,
        10,
        data=5000 * 28 * 28,
        wait=cfg.seconds + 0.5,  # each point: its measuring time, warm-up and workers' start
    )


def sweep(cfg: SweepConfig, device: torch.device):
    check(cfg)
    seed_everything(cfg.seed)
    images = pipeline_data.digits(cfg.seed)
    model = pipeline_data.cnn(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    settings = points(cfg)
    rows, step = [], 0
    for step in steps(len(settings)):
        setting = settings[step - 1]
        if cfg.sweep == "batch":
            row = _batch_point(model, opt, images, setting, cfg.seconds, device)
        else:
            row = _workers_point(model, opt, images, setting, cfg, device)
        rows.append(row)
        yield Snapshot(
            step,
            len(settings),
            {k: v for k, v in row.items() if k != "setting"},
            view={"rows": list(rows), "sweep": cfg.sweep},
        )
    yield Snapshot(step, len(settings), final=True)


def _train_step(model, opt, x, y) -> None:
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _synced(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def _batch_point(model, opt, images, batch: int, seconds: float, device: torch.device) -> dict:
    x = images.X_train[:batch].to(device)
    y = images.y_train[:batch].to(device)
    for _ in range(2):  # warm-up: first calls at a new shape pick kernels and allocate
        _train_step(model, opt, x, y)
    start, n = _synced(device), 0
    while n < 3 or time.perf_counter() - start < seconds:
        _train_step(model, opt, x, y)
        n += 1
    elapsed = _synced(device) - start
    return {"setting": batch, "images/s": n * batch / elapsed, "ms per step": 1e3 * elapsed / n}


def _workers_point(model, opt, images, workers: int, cfg: SweepConfig, device: torch.device) -> dict:
    """The loop of a training script, at `workers` workers: images/s, and the share of its time
    spent in next(batches)."""
    dataset = pipeline_data.Digits(images.X_train, images.y_train, cfg.augmentation)
    g = torch.Generator().manual_seed(cfg.seed)
    loader = pipeline_data.loader(dataset, WORKERS_BATCH, workers, False, g, samples=10**7)
    waited = n = 0
    batches = pipeline_data.epoch_batches(loader)
    for _ in range(2):  # warm-up: the workers have started and filled their queues
        _train_step(model, opt, *(t.to(device) for t in next(batches)))
    start = _synced(device)
    while n < 3 or time.perf_counter() - start < cfg.seconds:
        before = time.perf_counter()
        x, y = next(batches)
        waited += time.perf_counter() - before
        _train_step(model, opt, x.to(device), y.to(device))
        n += 1
    elapsed = _synced(device) - start
    del batches  # its workers end here, not during the next point's measurement
    return {"setting": workers, "images/s": n * WORKERS_BATCH / elapsed, "data wait share": waited / elapsed}
