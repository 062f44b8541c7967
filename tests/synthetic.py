"""Training loops that misbehave on purpose, for the runner and worker tests. Module-level, so a
worker process can import them by name."""

import time

import torch

from labs.core.control import steps
from labs.core.snapshot import Snapshot


def endless(cfg, device):
    """Quick steps until told to end; then its final snapshot, with 'weights'."""
    step = 0
    for step in steps(10**9):
        time.sleep(0.002)
        if step % 50 == 1:
            yield Snapshot(step, 10**9, {"loss": 1.0 / step})
    yield Snapshot(step, 10**9, final=True, state_dict={"w": torch.zeros(1)})


def one_endless_step(cfg, device):
    """Reports one snapshot, then its second step never ends (a huge model's single step)."""
    for step in steps(10):
        if step == 1:
            yield Snapshot(1, 10, {"loss": 1.0})
        else:
            time.sleep(3600)
    yield Snapshot(10, 10, final=True, state_dict={})


def hoarder(cfg, device):
    """Keeps `cfg` MB more memory at every step, touching it so that it is really resident."""
    kept, step = [], 0
    for step in steps(10**6):
        kept.append(torch.ones(cfg * 1024**2 // 4))
        if step == 1:
            yield Snapshot(1, 10**6, {"loss": 1.0})
        time.sleep(0.01)
    yield Snapshot(step, 10**6, final=True, state_dict={})


def one_huge_step(cfg, device):
    """One snapshot, then a single step that takes `cfg` MB at once and holds it."""
    for step in steps(10):
        if step == 1:
            yield Snapshot(1, 10, {"loss": 1.0})
        else:
            held = torch.ones(cfg * 1024**2 // 4)
            time.sleep(3600)
            del held
    yield Snapshot(10, 10, final=True, state_dict={})


_KEPT: list = []  # what earlier runs left in a worker (caches, a leak): it stays resident


def leaves_memory(cfg, device):
    """Leaves `cfg` MB resident in its worker after it ends, as an earlier run's caches would."""
    import numpy as np

    _KEPT.append(np.ones(cfg * 1024**2 // 8))  # touched: really resident
    yield Snapshot(1, 1, {"loss": 1.0})
    yield Snapshot(1, 1, final=True, state_dict={})


def short(cfg, device):
    """A small, quick run: 20 steps of 10 ms."""
    step = 0
    for step in steps(20):
        time.sleep(0.01)
        yield Snapshot(step, 20, {"loss": 1.0 / step})
    yield Snapshot(step, 20, final=True, state_dict={"w": torch.zeros(1)})


def chatty(cfg, device):
    """Sends snapshots without pause and never asks its Control whether to end (a loop that
    forgot `steps()`): only the server's watchdog can end it."""
    while True:
        yield Snapshot(1, 1, {"loss": 1.0})


def big_messages(cfg, device):
    """Streams snapshots of `cfg` MB each, one after another, for as long as it is let."""
    import numpy as np

    picture = np.ones(cfg * 1024**2 // 4, dtype=np.float32)
    step = 0
    for step in steps(10**6):
        yield Snapshot(step, 10**6, {"loss": 1.0}, view={"picture": picture})
    yield Snapshot(step, 10**6, final=True, state_dict={})
