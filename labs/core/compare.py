"""Side by side: several variants of one experiment trained in lockstep, as one run.

A chapter that compares (plain vs residual, with vs without regularization) makes one
generator per variant from its ordinary single-run loop and hands them to `side_by_side`. The
result is again a generator of snapshots, so the runner, the worker processes, Stop and the
page's live redraw treat a comparison exactly like any other run.

What makes the comparison fair:
- lockstep: the variant furthest behind always goes next, so the curves grow together and a
  Stop leaves every variant at about the same point;
- one seed, separate random streams: each variant seeds itself as a single run would (same
  data, same batches, same initial weights where the architectures agree), and its random
  state is set aside while the others train, so dropout masks do not depend on scheduling;
- own clocks: each variant's snapshot cadence counts only its own time (`Stopwatch`).

A variant that diverges drops out with a note; the others carry on (a diverging plain net
beside a BatchNorm net that trains is the lesson, not a failure).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from figures.variants import metric
from labs.core.control import current, prefixed
from labs.core.failures import Diverged
from labs.core.snapshot import Snapshot, Stopwatch, timed_by


@dataclass
class Variant:
    name: str
    gen: Iterator[Snapshot] | None = None  # None: a stacked variant (labs/stacked.py SideBySide)
    watch: Stopwatch = field(default_factory=Stopwatch)
    rng: tuple | None = None  # (cpu state, cuda state) while another variant runs
    done: bool = False
    step: int = 0
    total: int = 1
    status: str = "training"
    view: dict = field(default_factory=dict)
    state_dict: dict | None = None

    def public(self) -> dict:
        return {**self.view, "step": self.step, "total": self.total, "status": self.status}


def side_by_side(variants: dict[str, Iterator[Snapshot]], device: torch.device) -> Iterator[Snapshot]:
    """Train every variant's generator in lockstep, yielding one merged snapshot per variant
    snapshot. Metrics and layers are prefixed with the variant's name; `view["variants"]`
    holds each variant's latest view with its step and status. The final snapshot carries
    {variant: state_dict}. On Stop (or the budget) every variant ends with its weights."""
    runs = [Variant(name, gen) for name, gen in variants.items()]
    while (active := [r for r in runs if not r.done]) and current().should_end() is None:
        run = min(active, key=lambda r: r.step / max(r.total, 1))  # the one furthest behind
        snap = _advance(run, device)
        yield merged(runs, run, snap)
    for run in runs:
        while not run.done:  # stopped: each variant's steps() ends its loop, which hands over its weights
            _advance(run, device)
    yield final_of(runs)


def final_of(runs: list[Variant]) -> Snapshot:
    """The comparison's last snapshot: every variant's status, and {variant: state_dict}."""
    return Snapshot(
        max(r.step for r in runs),
        max(r.total for r in runs),
        view={"variants": {r.name: r.public() for r in runs}},
        state_dict={r.name: r.state_dict for r in runs if r.state_dict is not None},
        final=True,
    )


def _advance(run: Variant, device: torch.device) -> Snapshot:
    """Let one variant train up to its next snapshot (after Stop: its final one)."""
    with timed_by(run.watch), _own_random_stream(run, device), prefixed(metric(run.name, "")):
        try:
            snap = next(run.gen)
        except StopIteration:
            run.done, run.status = True, "done"
            return Snapshot(run.step, run.total)
        except Diverged as err:
            return diverged(run, err)
    took(run, snap, current())
    return snap


def took(run: Variant, snap: Snapshot, control) -> None:
    """A variant's snapshot, heard: its step, view, and, at its end, weights and status."""
    run.step, run.total = snap.step, snap.total_steps
    run.view.update(snap.view)
    if snap.final:
        run.done, run.state_dict = True, snap.state_dict
        stopped = control.should_end() is not None  # Stop, or the server's budget
        run.status = "stopped" if stopped else run.view.get("ended", "done")


def diverged(run: Variant, err: Exception) -> Snapshot:
    """A variant that diverged drops out with a note; the others carry on."""
    run.done, run.status = True, f"diverged: {err}"
    return Snapshot(run.step, run.total, notes=[f"{run.name} diverged: {err}"])


@contextmanager
def _own_random_stream(run: Variant, device: torch.device):
    cuda = device.type == "cuda"
    if run.rng is not None:
        torch.set_rng_state(run.rng[0])
        if cuda:
            torch.cuda.set_rng_state(run.rng[1], device)
    try:
        yield
    finally:
        run.rng = (torch.get_rng_state(), torch.cuda.get_rng_state(device) if cuda else None)


def merged(runs: list[Variant], run: Variant, snap: Snapshot) -> Snapshot:
    return Snapshot(
        snap.step,
        snap.total_steps,
        metrics={metric(run.name, k): v for k, v in snap.metrics.items()},
        layers={metric(run.name, k): v for k, v in snap.layers.items()},
        view={"variants": {r.name: r.public() for r in runs}},
        notes=snap.notes,
    )


def load_variants(state_dicts: dict[str, dict], variants: dict[str, str], build) -> dict:
    """The trained nets of a side-by-side run, by label, in eval mode: `variants` maps each
    variant's key to its label, `build(key)` makes its net."""
    by_label = {label: key for key, label in variants.items()}
    models = {}
    for label, state in state_dicts.items():
        model = build(by_label[label])
        model.load_state_dict(state)
        models[label] = model.eval()
    return models
