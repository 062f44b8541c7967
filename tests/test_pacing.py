"""A run too fast to watch plays at a watchable pace: the loop waits between steps (on the run's
own clock), Stop ends a wait at once, the numbers are the very ones of a full-speed run, and the
budget counts the waiting."""

from dataclasses import replace

import torch

from labs import autograd, optimizers, playground
from labs.core import pacing
from labs.core.control import Control, current, installed, steps

CPU = torch.device("cpu")


class FakeTime:
    """A clock that moves only when the loop sleeps: pacing decisions without waiting."""

    def __init__(self):
        self.now = self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def paced_control(time_: FakeTime, stop=None) -> Control:
    control = Control(stop=stop, clock=time_.clock)
    control.sleep = time_.sleep
    return control


def test_a_paced_loop_waits_until_each_step_is_due():
    time_ = FakeTime()
    with installed(paced_control(time_)):
        seen = list(steps(30, per_second=10.0))
    assert seen == list(range(1, 31))
    assert abs(time_.now - 2.9) < 1e-9  # step k begins (k - 1) / 10 s after the first


def test_a_paced_loops_waits_are_not_a_snapshots_cost():
    """A snapshot's cost is measured up to the next step; at a watchable pace that includes the
    wait before it, which is spare time, not work: snapshots stay as frequent as they are cheap."""
    from labs.core.snapshot import Cadence

    time_ = FakeTime()
    with installed(paced_control(time_)):
        cadence = Cadence(total=100, max_snaps=100, min_seconds=0.0)
        taken = [step for step in steps(100, per_second=10.0) if cadence.due(step)]
    assert taken == list(range(1, 101))  # 0.1 s waited between steps, none of it counted
    unpaced = Cadence(total=100, max_snaps=100, min_seconds=0.0)
    now = [0.0]
    unpaced._now = lambda: now[0]
    assert unpaced.due(1)
    now[0] = 0.1  # the same 0.1 s spent working after the snapshot …
    assert not unpaced.due(2)  # … is its cost: the next one waits until it is a small share


def test_a_paced_loop_spends_part_of_its_waits_on_more_snapshots():
    """A snapshot made while a paced loop would wait costs the run nothing: a loop that waits
    80% of its time takes one at every step where the same loop flat out takes one in six, and
    it still ends on time."""
    from labs.core.snapshot import Cadence

    def loop(per_second):
        time_ = FakeTime()
        with installed(paced_control(time_)):
            cadence = Cadence(total=100, max_snaps=100, min_seconds=0.0)
            taken = 0
            for step in steps(100, per_second):
                time_.now += 0.02  # the step's own work
                if cadence.due(step):
                    taken += 1
                    time_.now += 0.01  # the snapshot's
        return taken, time_.now

    paced, took = loop(per_second=10.0)
    flat_out, _ = loop(per_second=None)
    assert paced >= 90 and flat_out <= 25
    assert took < 10.0 + 0.05  # 99 steps 0.1 s apart, the last one's work: no later for them


def test_stop_ends_a_paced_wait_at_once():
    import threading

    time_, stop = FakeTime(), threading.Event()
    control = paced_control(time_, stop)
    naps = []

    def sleep(seconds):
        naps.append(seconds)
        stop.set()  # Stop pressed during the first nap
        time_.sleep(seconds)

    control.sleep = sleep
    with installed(control):
        seen = list(steps(100, per_second=1.0))
    assert seen == [1] and len(naps) == 1 and naps[0] <= 0.05


def test_a_watchable_run_computes_what_a_full_speed_run_does():
    def final(train, cfg):
        time_ = FakeTime()
        with installed(paced_control(time_)):
            snaps = list(train(cfg, CPU))
        return snaps, time_.slept

    fit, slept = final(autograd.train, autograd.Config(speed="watchable"))
    fast, no_wait = final(autograd.train, autograd.Config(speed="full"))
    assert torch.equal(fit[-1].state_dict["coefficients"], fast[-1].state_dict["coefficients"])
    assert slept > 299 / pacing.WATCHABLE_STEPS_PER_SECOND * 0.9 and no_wait == 0.0
    race, slept = final(optimizers.race_on_surface, optimizers.SurfaceConfig())
    rushed, _ = final(optimizers.race_on_surface, optimizers.SurfaceConfig(speed="full"))
    assert race[-1].view == rushed[-1].view and slept > 4.0  # who reached the minimum, when


def test_the_budget_counts_the_waiting():
    watchable, full = autograd.cost(autograd.Config()), autograd.cost(autograd.Config(speed="full"))
    assert watchable.wait == 1 / pacing.WATCHABLE_STEPS_PER_SECOND and full.wait == 0


def test_a_paced_run_too_long_for_the_budget_gives_up_the_pace_first():
    from labs.core.budget import Limits, Speed, fitting

    cfg = autograd.Config(steps=100_000)  # ~28 minutes at a watchable pace, well under a second flat out
    fit = fitting(cfg, autograd.cost, Limits(2048, 60), Speed(1e10, 12.6e-6))
    assert fit is not None and fit.speed == "full" and fit.steps == 100_000


def test_the_playground_plays_an_epoch_a_frame_and_computes_what_full_speed_does():
    cfg = playground.Config(epochs=10)  # 13 steps an epoch: 100 training points, 16 a batch
    assert playground.steps_per_second(cfg) == pacing.WATCHABLE_EPOCHS_PER_SECOND * 13
    assert playground.steps_per_second(replace(cfg, speed="full")) is None
    time_ = FakeTime()
    with installed(paced_control(time_)):
        watched = list(playground.train(cfg, CPU))
    fast = list(playground.train(replace(cfg, speed="full"), CPU))
    assert abs(time_.slept - 129 / playground.steps_per_second(cfg)) < 1e-6
    for name, weight in fast[-1].state_dict.items():
        assert torch.equal(watched[-1].state_dict[name], weight)
    assert playground.cost(cfg).wait == 1 / playground.steps_per_second(cfg)


def test_a_watchable_batch_waits_between_its_steps_and_ends_as_at_full_speed():
    """The server's batches (labs/core/stackdrive.py) pace a watchable stack as `steps()` paces
    a run alone; a stack's step never waits by itself (the class bench drives it flat out)."""
    import queue
    import time

    from labs.core.budget import Limits
    from labs.core.stackdrive import Member, StackJob, drive_stack, taking_from

    def driven(cfg) -> tuple[dict, float]:
        inbox, finals = queue.SimpleQueue(), []

        def emit(kind, payload):
            _, what, body = payload
            if what == "snap" and body.final:
                finals.append(body.state_dict)
            if what in ("end", "error"):
                inbox.put(("close",))

        job = StackJob(playground.EXPERIMENT.stack, CPU, Member(1, cfg, Limits()))
        began = time.monotonic()
        drive_stack(job, taking_from(inbox), emit)
        return finals[-1], time.monotonic() - began

    cfg = playground.Config(epochs=20, seed=3)
    before = current().slept
    watched, took = driven(cfg)
    waited = current().slept - before
    fast, flat_out = driven(replace(cfg, speed="full"))
    assert took >= 0.75 * 259 / playground.steps_per_second(cfg)  # never much faster than asked
    # its waits are counted as such, which its members' snapshots may use (Cadence's IDLE_USE):
    # about the time it took beyond its work, however fast the CPU
    assert 0.5 * (took - flat_out) <= waited <= took
    for name, weight in fast.items():
        assert torch.equal(watched[name], weight)


def test_initialization_plays_60_steps_a_second_alone_and_batched_as_at_full_speed():
    """Chapter 4's 300 steps take about a second flat out: watched, they take five; a batch of
    watchable runs keeps the pace (its key), and the weights are the full-speed ones."""
    from labs import initialization, mlp_stacked

    cfg = initialization.Config(depth=4, steps=20)
    assert initialization.recipe(cfg).per_second == pacing.WATCHABLE_STEPS_PER_SECOND
    assert initialization.cost(cfg).wait == 1 / pacing.WATCHABLE_STEPS_PER_SECOND
    full = replace(cfg, speed="full")
    assert initialization.recipe(full).per_second is None and initialization.cost(full).wait == 0
    assert initialization.stacking_key(cfg) != initialization.stacking_key(full)  # never batched together
    time_ = FakeTime()
    with installed(paced_control(time_)):
        watched = list(initialization.train(cfg, CPU))
    fast = list(initialization.train(full, CPU))
    assert abs(time_.slept - 19 / pacing.WATCHABLE_STEPS_PER_SECOND) < 1e-6
    for name, weight in fast[-1].state_dict.items():
        assert torch.equal(watched[-1].state_dict[name], weight)
    stack = mlp_stacked.Stack(CPU, initialization.recipe)
    stack.add("a", cfg)
    assert stack.per_second() == pacing.WATCHABLE_STEPS_PER_SECOND


def test_a_batch_members_step_count_goes_home_at_a_browsers_pace():
    """A batch member's progress line reads the step counts the batch sends home: with its
    points alone (one per POINT_STEPS steps) a watchable run's line would jump ten steps at a
    time, 6 times a second; the batch tells them every 1/30 s."""
    import queue

    from labs import initialization
    from labs.core.budget import Limits
    from labs.core.stackdrive import Member, StackJob, drive_stack, taking_from

    inbox, told = queue.SimpleQueue(), []

    def emit(kind, payload):
        _, what, body = payload
        if what == "progress":
            told.append(body[0])
        if what in ("end", "error"):
            inbox.put(("close",))

    cfg = initialization.Config(depth=4, steps=60, speed="watchable")  # a second, paced
    job = StackJob(initialization.EXPERIMENT.stack, CPU, Member(1, cfg, Limits()))
    drive_stack(job, taking_from(inbox), emit)
    assert told[-1] == 60 and len(set(told)) >= 60 / 3, sorted(set(told))
