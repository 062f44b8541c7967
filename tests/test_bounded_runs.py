"""Every run is bounded: Stop ends it between two steps (or its worker is ended), a config past
the server's budget is refused before it starts with what to lower, and a run past its time or
memory is stopped while it trains. Runs go through the worker pool, as in the app."""

import os
import signal
import time

import pytest
import torch

from chapters import CHAPTERS
from labs.core import budget
from labs.core.budget import Limits
from labs.core.contract import experiments_of, lab_of
from labs.core.runner import RunState, Slots, TrainingRun
from labs.core.workers import POOL, STOP_GRACE_SECONDS
from tests import synthetic

CPU = torch.device("cpu")
FIXED = {  # an upload needs a file: the generated data is as large
    "language": {"corpus": "python"},
    "tabular": {"data": "sales"},
}
SETTLE = 5.0  # beyond the grace period: a loaded CI machine schedules the worker late


def experiments():
    """(name, slug, Experiment) for every Train button of every registered chapter."""
    for chapter in CHAPTERS:
        for part, experiment in experiments_of(lab_of(chapter.slug)).items():
            yield f"{chapter.slug}.{part or 'main'}", chapter.slug, experiment


EXPERIMENTS = list(experiments())


@pytest.fixture(scope="module", autouse=True)
def workers():
    POOL.prestart(1)
    POOL.wait_ready()
    yield


def wait_for_steps(run: TrainingRun, timeout: float = 120) -> None:
    """Until the loop reports a step (or a snapshot arrives, or the run ends)."""
    end = time.time() + timeout
    while time.time() < end:
        view = run.view()
        if view.step > 0 or view.history or not view.alive:
            return
        time.sleep(0.05)
    raise AssertionError("the run reported no step")


def stopped_within(run: TrainingRun, seconds: float) -> float:
    start = time.time()
    run.stop()
    assert run.wait(seconds), f"still running {seconds} s after Stop"
    return time.time() - start


@pytest.mark.parametrize("name, slug, experiment", EXPERIMENTS, ids=[e[0] for e in EXPERIMENTS])
def test_stop_ends_the_heaviest_config_the_budget_admits(name, slug, experiment):
    """The heaviest in-range config is cut down to the budget's suggestion, which then trains
    through a worker until Stop; Stop ends it within the grace period."""
    limits = Limits.from_env()
    speed = budget.measured_speed("cpu")
    heavy = budget.heaviest(experiment.config, experiment.cost, FIXED.get(slug))
    fitted = budget.fitting(heavy, experiment.cost, limits, speed)
    assert fitted is not None, f"{name}: no settings near the heaviest fit the budget"
    run = TrainingRun(experiment.train, fitted, CPU, executor=POOL, cost=experiment.cost, limits=limits)
    run.start()
    wait_for_steps(run)
    took = stopped_within(run, STOP_GRACE_SECONDS + SETTLE)
    view = run.view()
    assert view.state in (RunState.STOPPED, RunState.DONE), (name, view.state, view.message)
    print(f"{name}: stopped {took:.1f} s after Stop, at step {view.step} of {view.total_steps}")


def test_a_config_past_the_memory_budget_is_refused_before_it_starts_with_what_to_lower():
    from labs import language

    heavy = language.Config(
        model="transformer", width=512, layers=4, context=256, batch_size=256, steps=20000
    )
    run = TrainingRun(language.train, heavy, CPU, executor=POOL, cost=language.cost).start()
    assert run.wait(1)  # no thread, no queue, no worker
    view = run.view()
    assert view.state == RunState.FAILED and view.step == 0
    assert "GB of memory" in view.message and "Lower Width to" in view.message, view.message
    suggestion = run.verdict.suggestion
    fitted = budget.judge(
        language.Config(**{**heavy.__dict__, **suggestion}),
        language.cost,
        Limits.from_env(),
        budget.measured_speed(),
    )
    assert fitted.fits


def test_a_step_that_never_ends_is_cut_short_after_stop_and_the_next_run_works():
    run = TrainingRun(synthetic.one_endless_step, None, CPU, executor=POOL).start()
    assert run.wait_for_first_snapshot(60)
    time.sleep(0.3)  # inside the endless second step now
    stopped_within(run, STOP_GRACE_SECONDS + SETTLE)
    view = run.view()
    assert view.state == RunState.STOPPED and "middle of a long step" in view.message
    assert view.history and view.state_dict is None  # the curves stay; there are no weights
    after = TrainingRun(synthetic.endless, None, CPU, executor=POOL).start()
    wait_for_steps(after)
    stopped_within(after, STOP_GRACE_SECONDS + SETTLE)
    assert after.view().state == RunState.STOPPED and after.view().state_dict is not None


def test_a_worker_killed_mid_run_is_reported_as_lost_and_the_next_run_works():
    run = TrainingRun(synthetic.endless, None, CPU, executor=POOL).start()
    assert run.wait_for_first_snapshot(60)
    os.kill(run.process_id, signal.SIGKILL)
    assert run.wait(10)
    view = run.view()
    assert view.state == RunState.FAILED and view.history
    assert "ended unexpectedly" in view.message and "GPU" not in view.message, view.message
    after = TrainingRun(synthetic.endless, None, CPU, executor=POOL).start()
    wait_for_steps(after)
    stopped_within(after, STOP_GRACE_SECONDS + SETTLE)
    assert after.view().state == RunState.STOPPED


def test_a_run_past_its_time_is_stopped_and_keeps_its_weights():
    run = TrainingRun(synthetic.endless, None, CPU, executor=POOL, limits=Limits(seconds=1.5)).start()
    assert run.wait_for_first_snapshot(60)  # a worker replacing a killed one may still import torch
    assert run.wait(1.5 + STOP_GRACE_SECONDS + SETTLE)
    view = run.view()
    assert view.state == RunState.STOPPED and "time limit" in view.message, view.message
    assert view.state_dict is not None and "weights so far are kept" in view.message


def test_a_run_growing_past_its_memory_is_stopped_between_steps():
    run = TrainingRun(synthetic.hoarder, 20, CPU, executor=POOL, limits=Limits(memory_mb=300)).start()
    assert run.wait(60)
    view = run.view()
    assert view.state == RunState.STOPPED and "memory" in view.message, view.message
    assert "weights so far are kept" in view.message


def test_a_single_step_far_past_the_memory_budget_gets_its_worker_ended():
    run = TrainingRun(synthetic.one_huge_step, 1200, CPU, executor=POOL, limits=Limits(memory_mb=300)).start()
    assert run.wait(60)
    view = run.view()
    assert view.state == RunState.STOPPED and "memory" in view.message, view.message
    assert view.state_dict is None and view.history


def test_a_queued_run_of_another_learner_starts_once_a_heavy_run_is_stopped():
    slots = Slots(1)
    first = TrainingRun(synthetic.one_endless_step, None, CPU, slots=slots, executor=POOL).start()
    assert first.wait_for_first_snapshot(60)
    second = TrainingRun(synthetic.endless, None, CPU, slots=slots, executor=POOL).start()
    time.sleep(0.5)
    assert second.view().state == RunState.QUEUED and second.view().queue_position == 1
    first.stop()  # a step that never ends: its worker is ended, its slot freed
    wait_for_steps(second, timeout=STOP_GRACE_SECONDS + 60)
    assert second.view().state == RunState.RUNNING
    stopped_within(second, STOP_GRACE_SECONDS + SETTLE)
