"""Running a lab the way the app does (the shared runner and driver, on the CPU, on the runner's
own thread) and waiting for the end; and a seeded run's every message, to compare executors."""

from dataclasses import replace

import torch

from figures.views import normalization as normalization_views
from figures.views import playground as playground_views
from labs import normalization, playground
from labs.core.budget import Limits
from labs.core.driver import IN_THREAD, Job
from labs.core.runner import RunState, TrainingRun

CPU = torch.device("cpu")


def run_view(train, cfg, must_finish: bool = True, timeout: float = 300):
    """The ended run's view, at full speed (a watchable pace computes the same, later:
    tests/test_pacing.py). Unless told a run may end otherwise (some questions are about a
    run that diverges), fails with the run's own message when it did not end DONE."""
    if getattr(cfg, "speed", None) == "watchable":
        cfg = replace(cfg, speed="full")
    run = TrainingRun(train, cfg, CPU, executor=IN_THREAD).start()
    assert run.wait(timeout)
    view = run.view()
    assert view.state == RunState.DONE or not must_finish, view.message
    return view


class TickingClock:
    """A run's clock for tests: each reading is `tick` seconds after the one before, whatever
    the machine is doing. Every pacing decision of a run (when curve points leave, snapshots,
    frames) then depends on the code that ran, not on how fast it ran, so the same run makes the
    same messages wherever it is driven."""

    def __init__(self, tick: float = 1e-3):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


RUNS = {  # a one-net run, and a side-by-side run (each variant on its own stopwatch)
    "playground": (playground.train, playground.Config(epochs=20), playground_views.VIEWS),
    "normalization": (
        normalization.train,
        normalization.Config(depth=4, steps=60),
        normalization_views.VIEWS,
    ),
}


def messages(executor, name: str) -> list[tuple]:
    """Every message of one run, in order, with snapshots as (step, metrics, final)."""
    train, cfg, views = RUNS[name]
    job = Job(train, cfg, CPU, Limits(), views.draw, clock=TickingClock())
    got = []

    def receive(kind, payload):
        if kind == "snap":
            payload = (payload.step, payload.metrics, payload.final)
        got.append((kind, payload))

    executor.start(job).run(receive)
    return got
