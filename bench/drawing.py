"""What its live views cost each experiment of every chapter, as a share of its run.

    make bench                      # bench.speed, then this table
    python -m bench.drawing [slug ...]

Every experiment's default run, at full speed, driven on this thread as a worker drives it
(labs/core/driver.py `drive`), two ways, each twice in turn (bare, live, bare, live) and the
fastest of each kept: a run's time moves by ±5% from one run to the next on a shared 2-core
machine, as much as what is measured.

- bare: a snapshot only at the last step, no frames: the loop and its data path alone;
- live: its snapshots as the app takes them (the evaluation the views need) and its frames,
  what a learner's run does.

"live / bare" is the price of watching a run (the target: at most 1.10). The live run's own
time is also split, measured inside it (free of that noise): its snapshots' cost (as Cadence
measures each, from its start to the next step: the frame drawn from it included) and its other
frames' (drawn as curve points come: the history they keep, the figure dicts they build, the
JSON they encode), as shares of the run: "watching" is the two together, what live / bare would
be on a quiet machine.
A loop that decides its snapshots without `Cadence` keeps them in the bare run too: its "bare"
then includes them (the table says so).
"""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass, replace

import torch

from chapters import CHAPTERS, link_prefix
from figures.views import views_of
from labs.core import frames as frames_module
from labs.core.budget import Limits
from labs.core.config import from_params
from labs.core.contract import experiments_of, lab_of
from labs.core.control import Control
from labs.core.device import configure_threads, pick_device, warm_up
from labs.core.driver import Job, Outlet, drive
from labs.core.snapshot import Cadence


def full_speed(cfg):
    """A watchable run waits between its steps on purpose: its cost is measured flat out."""
    return replace(cfg, speed="full") if getattr(cfg, "speed", None) == "watchable" else cfg


REPEATS = 2  # each way, in turn: the fastest is kept
# … and up to this many more where the two measures disagree about the target (the ratio over
# 1.10, the share measured inside the run under it): a run's speed drifts by up to 20% over a
# minute on this machine (attention, bare, four times in a row: 8.7, 7.8, 7.5, 7.3 s), its CPU
# time with it (no other process runs: the machine itself is slower or faster).
MORE_REPEATS = 2
TARGET = 1.10
# A run shorter than this is timed by its snapshots alone (chapter 1's default fit: 20 ms at full
# speed, of which its first snapshot is 2): only the share measured inside it says anything.
SHORTEST_TIMED = 0.2


@dataclass
class Timing:
    seconds: float
    snapshots: int
    frames: int = 0
    views: float = 0.0  # seconds building figure dicts
    encoding: float = 0.0  # seconds encoding them to JSON
    snapshot_cost: float = 0.0  # seconds its snapshots cost, as Cadence measured each
    frame_cost: float = 0.0  # seconds in its frames between snapshots (as curve points come)


class _Clocked:
    """Wraps a chapter's views and the frames' encoder with stopwatches."""

    def __init__(self, views):
        self.inner, self.views, self.encoding, self.frames = views, 0.0, 0.0, 0
        self._encode = frames_module.to_json

    def __call__(self, history):
        start = time.perf_counter()
        try:
            return self.inner(history)
        finally:
            self.views += time.perf_counter() - start
            self.frames += 1

    def to_json(self, obj) -> bytes:
        start = time.perf_counter()
        try:
            return self._encode(obj)
        finally:
            self.encoding += time.perf_counter() - start


class _Costs:
    """Sums, inside a run, what its snapshots cost, each as its Cadence measured it (from its
    start to the next step: the frame drawn from it included), and what its other frames took
    (those drawn when curve points came, between snapshots)."""

    def __init__(self):
        self.snapshots = self.frames = 0.0

    def installed(self):
        real_due, real_points = Cadence.due, Outlet.points
        costs = self

        def due(cadence, step):
            measuring = cadence._measuring
            try:
                return real_due(cadence, step)
            finally:
                if measuring:  # this call measured the last snapshot
                    costs.snapshots += cadence._cost

        def points(outlet, payload):
            if outlet.frames is None:
                return real_points(outlet, payload)
            start = time.perf_counter()
            try:
                return real_points(outlet, payload)
            finally:
                costs.frames += time.perf_counter() - start

        Cadence.due, Outlet.points = due, points

        def uninstall():
            Cadence.due, Outlet.points = real_due, real_points

        return uninstall


def _final_only(self, step: int) -> bool:
    return step == self.total


def timed(experiment, cfg, device, views=None, snapshots: bool = True) -> Timing:
    clocked = _Clocked(views) if views is not None else None
    costs = _Costs()
    real_due, real_along, real_encode = Cadence.due, Cadence.along, frames_module.to_json
    uninstall = costs.installed()
    if not snapshots:
        Cadence.due, Cadence.along = _final_only, lambda self, step: False
    if clocked is not None:
        frames_module.to_json = clocked.to_json
    snaps = []
    try:
        job = Job(experiment.train, cfg, device, Limits(), clocked)
        start = time.perf_counter()
        drive(job, Control(), lambda kind, *rest: snaps.append(kind) if kind == "snap" else None)
        seconds = time.perf_counter() - start
    finally:
        uninstall()
        Cadence.due, Cadence.along, frames_module.to_json = real_due, real_along, real_encode
    timing = Timing(seconds, len(snaps), snapshot_cost=costs.snapshots, frame_cost=costs.frames)
    if clocked is not None:
        timing.frames, timing.views, timing.encoding = clocked.frames, clocked.views, clocked.encoding
    return timing


def fastest(experiment, cfg, device, views) -> tuple[Timing, Timing, int]:
    """(bare, live, runs each way), each the fastest of REPEATS runs made in turn, or more
    where the ratio and the share measured inside disagree about TARGET."""
    bare, live = [], []
    for made in range(REPEATS + MORE_REPEATS):
        if made >= REPEATS:
            fast_bare, fast_live = (min(t, key=lambda t: t.seconds) for t in (bare, live))
            if fast_live.seconds / fast_bare.seconds <= TARGET or watching(fast_live) > TARGET:
                break
        bare.append(timed(experiment, cfg, device, snapshots=False))
        live.append(timed(experiment, cfg, device, views=views))
    return min(bare, key=lambda t: t.seconds), min(live, key=lambda t: t.seconds), len(bare)


def watching(live: Timing) -> float:
    """What live / bare would be if the run's snapshots and frames were its only difference:
    live / (live less them)."""
    return 1 / (1 - min((live.snapshot_cost + live.frame_cost) / live.seconds, 0.99))


def every_experiment(slugs: list[str] | None = None):
    """(name, experiment, default full-speed config, its quick config, its views) for every
    chapter's experiments."""
    for chapter in CHAPTERS:
        if slugs and chapter.slug not in slugs:
            continue
        module = importlib.import_module(f"figures.views.{chapter.slug}")
        for part, experiment in experiments_of(lab_of(chapter.slug)).items():
            name = f"{chapter.code} {chapter.slug}" + (f" · {part}" if part else "")
            quick, _ = from_params(experiment.config, chapter.smoke, link_prefix(part))
            cfg, views = experiment.config(), views_of(module, part).draw
            yield name, experiment, full_speed(cfg), full_speed(quick), views


def main(argv: list[str] | None = None) -> None:
    slugs = sys.argv[1:] if argv is None else argv
    threads = configure_threads()
    warm_up()
    print(
        f"\ntorch {torch.__version__}, {threads} threads: what live views cost each default run, flat out "
        f"(fastest of {REPEATS} runs each way, of {REPEATS + MORE_REPEATS} where the measures disagree)"
    )
    print(
        "\n| experiment | bare (s) | live (s) | live / bare | watching | snapshots' share "
        "| other frames' share | snapshots | frames | views (s) | encoding (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    worst = []
    for name, experiment, cfg, quick, views in every_experiment(slugs or None):
        device = pick_device(experiment.prefers_gpu)
        timed(experiment, quick, device, views=views)  # its modules imported, its data cached
        bare, live, runs = fastest(experiment, cfg, device, views)
        ratio, watched = live.seconds / bare.seconds, watching(live)
        snaps, frames = live.snapshot_cost / live.seconds, live.frame_cost / live.seconds
        own = "" if bare.snapshots <= 2 else f" ({bare.snapshots} snapshots its own way)"
        # a loop whose phases or stopping hang on its snapshots runs otherwise without them
        comparable = bare.seconds <= 1.1 * live.seconds
        timeable = bare.seconds >= SHORTEST_TIMED
        if comparable:
            worst.append((max(ratio, watched) if timeable else watched, ratio, watched, name))
        shown = f"**{ratio:.2f}**" if comparable else f"{ratio:.2f} (bare ran otherwise)"
        shown += "" if timeable else " (too short to time)"
        shown += f" ({runs} runs each)" if runs > REPEATS else ""
        print(
            f"| {name} | {bare.seconds:.2f}{own} | {live.seconds:.2f} | {shown} | {watched:.2f} "
            f"| {snaps:.1%} | {frames:.1%} | {live.snapshots} | {live.frames} | {live.views:.2f} "
            f"| {live.encoding:.2f} |",
            flush=True,
        )
    over = sorted(w for w in worst if w[0] > TARGET)
    print(
        f"\n{len(worst) - len(over)} of {len(worst)} comparable experiments within {TARGET:.2f}, "
        "measured either way" + (":" if over else ".")
    )
    for _, ratio, watched, name in reversed(over):
        print(f"  over: {name}: live / bare {ratio:.2f}, watching {watched:.2f}")


if __name__ == "__main__":
    main()
