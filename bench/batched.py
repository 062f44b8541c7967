"""A class pressing Train together on the playground (or chapters 3-5): K learners' default runs
started within 2 s, trained by the runner in worker processes, as batches
(labs/core/batches.py) against separate runs (printed, never asserted).

    .venv/bin/python -m bench.batched [--learners 8,32] [--slots 2] [--device cuda]
                                      [--chapter playground|optimizers|initialization|...]

For each K and each way: aggregate training steps per second (all runs' steps over the time
from the first Train to the last Done), each learner's time to Done (p50, p95) against a lone
run's, each learner's live frames per second while training (p50), and the largest relative
difference of a member's final weights from its run alone's (a batch of one; separate runs
train in float32 as nn.Modules, so theirs is float32's drift, for scale).

"press bound" is the most any server could reach with these presses: no run can end before
its press plus a lone run's time, so the wall is at least the last press plus that. When the
batches finish every run soon after its press, the presses, not the server, set the aggregate;
`--longer N` makes every learner's run N times its default length (its epochs or steps), to
show what the server itself holds. The playground trains at full speed unless `--watchable`
(its default pace, which a lone run holds a slot through).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from functools import partial

import torch

from figures.views import initialization as initialization_views
from figures.views import normalization as normalization_views
from figures.views import optimizers as optimizers_views
from figures.views import playground as playground_views
from labs import initialization, normalization, optimizers, playground
from labs.core.runner import RunState, TrainingRun
from labs.core.slots import Slots
from labs.core.workers import WorkerPool

CHAPTERS = {  # name -> (its experiment, its live views, a learner's default config of a seed)
    # at full speed unless --watchable: the throughput of a class, not the pace it is watched at
    "playground": (
        playground.EXPERIMENT,
        playground_views.VIEWS.draw,
        partial(playground.Config, speed="full"),
    ),
    "initialization": (initialization.EXPERIMENT, initialization_views.VIEWS.draw, initialization.Config),
    "normalization": (normalization.EXPERIMENT, normalization_views.VIEWS.draw, normalization.Config),
    "optimizers": (optimizers.NET, optimizers_views.draw_net, optimizers.Config),
}
EXPERIMENT, VIEWS, CONFIG = CHAPTERS["playground"]


def flat_weights(state: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """A final state dict's tensors by name (side by side and races nest one per variant)."""
    out = {}
    for name, value in state.items():
        if isinstance(value, dict):
            out |= flat_weights(value, f"{prefix}{name}/")
        else:
            out[prefix + name] = value
    return out


def alone_weights(cfg, device) -> dict[str, torch.Tensor]:
    """The run as a stack of one (its batch of one): its final weights."""
    stack, last = EXPERIMENT.stack(device), None
    stack.add(0, cfg)
    while stack.members:
        for _, snap in stack.step():
            last = snap
    return flat_weights(last.state_dict)


def weights_apart(mine: dict, alone: dict) -> float:
    """The largest difference of a weight from the run alone's, relative to that tensor's scale."""
    return max(float((mine[n] - w).abs().max() / w.abs().max().clamp(min=1e-12)) for n, w in alone.items())


class Watched:
    """A learner's run, and the live frames it received."""

    def __init__(self, cfg, slots: Slots, pool: WorkerPool, batched: bool, learner: str, device):
        batch = (EXPERIMENT.batch_key(cfg), EXPERIMENT.stack) if batched else None
        self.run = TrainingRun(
            EXPERIMENT.train, cfg, device, slots=slots, executor=pool, learner=learner,
            views=VIEWS, batch=batch,
        )  # fmt: skip
        self.frames, self._seen, self.first_at, self.last_at = 0, None, 0.0, 0.0
        self.run.listeners.append(self._heard)

    def _heard(self, run) -> None:
        if run.frames is not self._seen:
            self._seen, self.last_at = run.frames, time.perf_counter()
            self.first_at = self.first_at or self.last_at
            self.frames += 1

    def fps(self) -> float:
        """Live frames a second while it trained (from its first frame to its last)."""
        return (self.frames - 1) / max(self.last_at - self.first_at, 1e-9) if self.frames > 1 else 0.0

    def start(self) -> None:
        self.pressed = time.perf_counter()
        self.run.start()

    def done_s(self) -> float:
        return self.run.view().elapsed_s


def press_together(k: int, batched: bool, pool: WorkerPool, slots: int, device, lone: float) -> dict:
    seats = Slots(slots, per_learner=1)
    rng = random.Random(k)
    watched = [Watched(config(s), seats, pool, batched, f"learner{s}", device) for s in range(k)]
    offsets = sorted(rng.uniform(0, 2) for _ in watched)
    begin = time.perf_counter()
    for w, at in zip(watched, offsets):
        time.sleep(max(0.0, begin + at - time.perf_counter()))
        w.start()
    for w in watched:
        assert w.run.wait(1800)
    wall = time.perf_counter() - begin
    last_press = max(w.pressed for w in watched) - begin
    views = [w.run.view() for w in watched]
    assert all(v.state == RunState.DONE for v in views), [
        v.message for v in views if v.state != RunState.DONE
    ]
    done = sorted(w.done_s() for w in watched)
    fps = sorted(w.fps() for w in watched)
    steps = sum(v.step for v in views)
    return {
        "steps_per_s": steps / wall,
        "press_bound": steps / (last_press + lone),
        "done_p50": statistics.median(done),
        "done_p95": done[min(len(done) - 1, round(0.95 * (len(done) - 1)))],
        "fps_p50": statistics.median(fps),
        "weights": {i: flat_weights(v.state_dict) for i, v in enumerate(views)},
    }


def lone_done_s(pool: WorkerPool, batched: bool, device) -> float:
    w = Watched(config(0), Slots(1), pool, batched, "alone", device)
    w.start()
    assert w.run.wait(600)
    return w.done_s()


LONGER = 1  # --longer: every learner's run this many times its default length


def config(seed: int):
    """A learner's default config (of its seed), its length times --longer."""
    cfg = CONFIG(seed=seed)
    length = "epochs" if hasattr(cfg, "epochs") else "steps"
    return dataclasses.replace(cfg, **{length: getattr(cfg, length) * LONGER})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learners", default="8,32")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where every run trains")
    parser.add_argument("--chapter", default="playground", choices=tuple(CHAPTERS))
    parser.add_argument("--longer", type=int, default=1, help="every run this many times its default length")
    parser.add_argument(
        "--watchable", action="store_true", help="the playground at its default, watchable pace (24 epochs/s)"
    )
    parser.add_argument("--no-views", action="store_true", help="no live frames: what drawing costs")
    args = parser.parse_args(argv)
    global EXPERIMENT, VIEWS, CONFIG, LONGER
    EXPERIMENT, VIEWS, CONFIG = CHAPTERS[args.chapter]
    if args.watchable and args.chapter == "playground":
        CONFIG = playground.Config
    LONGER = args.longer
    VIEWS = None if args.no_views else VIEWS
    device = torch.device(args.device)
    pool = WorkerPool()
    pool.prestart(args.slots, device.type)
    pool.wait_ready()
    try:
        lone = {way: lone_done_s(pool, way, device) for way in (False, True)}
        print(
            f"one default run alone, time to Done: separate {lone[False]:.2f} s, "
            f"batch of one {lone[True]:.2f} s"
        )
        torch.set_num_threads(1)  # as a worker trains: a sum's order can depend on the threads
        alone = {s: alone_weights(config(s), device) for s in range(4)}
        print(
            "\n| K | way | steps/s | Done p50 (s) | Done p95 (s) | p95 / lone run | frames/s p50 "
            "| max rel. diff of final weights | press bound (steps/s) |"
        )
        print("|---" * 9 + "|")
        for k in [int(k) for k in args.learners.split(",")]:
            for batched in (False, True):
                r = press_together(k, batched, pool, args.slots, device, lone[batched])
                diff = max(weights_apart(r["weights"][s], alone[s]) for s in alone if s < k)
                print(
                    f"| {k} | {'batched' if batched else 'separate'} | {r['steps_per_s']:.0f} | "
                    f"{r['done_p50']:.1f} | {r['done_p95']:.1f} | {r['done_p95'] / lone[batched]:.1f} | "
                    f"{r['fps_p50']:.1f} | {diff:.1e} | {r['press_bound']:.0f} |",
                    flush=True,
                )
    finally:
        pool.close()


if __name__ == "__main__":
    main()
