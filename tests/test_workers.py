"""Runs in worker processes: same protocol as in a thread, off the server's GIL."""

import time

import pytest
import torch

from labs import convnets, playground
from labs.core.runner import RunState, TrainingRun
from labs.core.workers import POOL

CPU = torch.device("cpu")


@pytest.fixture(scope="module", autouse=True)
def one_worker():
    POOL.prestart(1)
    yield


def test_a_remote_run_finishes_with_weights():
    run = TrainingRun(playground.train, playground.Config(epochs=10), CPU, executor=POOL).start()
    assert run.wait(120)
    view = run.view()
    assert view.state == RunState.DONE and view.state_dict is not None
    assert view.history[-1]["train_loss"] < view.history[0]["train_loss"]


def test_stop_reaches_the_worker_and_the_worker_is_clean_for_the_next_run():
    run = TrainingRun(
        convnets.train, convnets.Config(dataset="digits8", epochs=30), CPU, executor=POOL
    ).start()
    assert run.wait_for_first_snapshot(120)
    time.sleep(0.5)
    run.stop()
    assert run.wait(60)
    stopped = run.view()
    assert stopped.state == RunState.STOPPED and stopped.state_dict is not None
    assert stopped.latest.step < stopped.latest.total_steps
    after = TrainingRun(playground.train, playground.Config(epochs=5), CPU, executor=POOL).start()
    assert after.wait(60) and after.view().state == RunState.DONE and after.view().history


def test_a_failure_in_the_worker_arrives_in_words():
    bad = convnets.Config(dataset="digits8", epochs=1, learning_rate=1.0, conv_layers=3)
    run = TrainingRun(
        convnets.train, bad.__class__(**{**bad.__dict__, "channels": 99}), CPU, executor=POOL
    ).start()
    assert run.wait(60)
    view = run.view()
    assert view.state == RunState.FAILED and "Channels" in view.message and "outside" in view.message
