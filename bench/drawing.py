"""What its live views cost each experiment of every chapter, as a share of its run.

    make bench                      # bench.speed, then this table
    python -m bench.drawing [slug ...]

Every experiment's default run, at full speed, driven on this thread as a worker drives it
(labs/core/driver.py `drive`), three ways:

- bare: a snapshot only at the last step, no frames: the loop and its data path alone;
- measured: its snapshots as the app takes them (the evaluation the views need), no frames;
- live: snapshots and frames, what a learner's run does.

"live / bare" is the price of watching a run (the target: at most 1.10), "live / + snapshots" the
frames' part of it; the live run's own time is split into what its frames spent building figure
dicts (the views) and encoding them (JSON).
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
from labs.core.driver import Job, drive
from labs.core.snapshot import Cadence


def full_speed(cfg):
    """A watchable run waits between its steps on purpose: its cost is measured flat out."""
    return replace(cfg, speed="full") if getattr(cfg, "speed", None) == "watchable" else cfg


@dataclass
class Timing:
    seconds: float
    snapshots: int
    frames: int = 0
    views: float = 0.0  # seconds building figure dicts
    encoding: float = 0.0  # seconds encoding them to JSON


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


def _final_only(self, step: int) -> bool:
    return step == self.total


def timed(experiment, cfg, device, views=None, snapshots: bool = True) -> Timing:
    clocked = _Clocked(views) if views is not None else None
    real_due, real_along, real_encode = Cadence.due, Cadence.along, frames_module.to_json
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
        Cadence.due, Cadence.along, frames_module.to_json = real_due, real_along, real_encode
    timing = Timing(seconds, len(snaps))
    if clocked is not None:
        timing.frames, timing.views, timing.encoding = clocked.frames, clocked.views, clocked.encoding
    return timing


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
    print(f"\ntorch {torch.__version__}, {threads} threads: what live views cost each default run, flat out")
    print(
        "\n| experiment | bare (s) | + snapshots (s) | live (s) | live / bare | live / + snapshots "
        "| snapshots | frames | views (s) | encoding (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    worst = []
    for name, experiment, cfg, quick, views in every_experiment(slugs or None):
        device = pick_device(experiment.prefers_gpu)
        timed(experiment, quick, device, views=views)  # its modules imported, its data cached
        bare = timed(experiment, cfg, device, snapshots=False)
        measured = timed(experiment, cfg, device)
        live = timed(experiment, cfg, device, views=views)
        ratio = live.seconds / bare.seconds
        own = "" if bare.snapshots <= 2 else f" ({bare.snapshots} snapshots its own way)"
        # a loop whose phases or stopping hang on its snapshots runs otherwise without them
        comparable = bare.seconds <= 1.1 * measured.seconds
        if comparable:
            worst.append((ratio, name))
        shown = f"**{ratio:.2f}**" if comparable else f"{ratio:.2f} (bare ran otherwise)"
        print(
            f"| {name} | {bare.seconds:.2f}{own} | {measured.seconds:.2f} | {live.seconds:.2f} | {shown} "
            f"| {live.seconds / measured.seconds:.2f} | {live.snapshots} | {live.frames} | {live.views:.2f} "
            f"| {live.encoding:.2f} |",
            flush=True,
        )
    over = sorted((r, n) for r, n in worst if r > 1.10)
    print(
        f"\n{len(worst) - len(over)} of {len(worst)} comparable experiments within 1.10"
        + (":" if over else ".")
    )
    for ratio, name in reversed(over):
        print(f"  over: {name} {ratio:.2f}")


if __name__ == "__main__":
    main()
