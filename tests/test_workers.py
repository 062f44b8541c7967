"""Runs in worker processes: same protocol as in a thread, off the server's GIL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from labs import convnets, playground
from labs.core.budget import Limits
from labs.core.runner import RunState, TrainingRun, stop_every_run
from labs.core.workers import POOL, STOP_GRACE_SECONDS, WorkerPool
from tests import synthetic

ROOT = Path(__file__).resolve().parents[1]

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


def test_memory_an_earlier_run_left_in_a_worker_does_not_count_against_the_next():
    pool = WorkerPool()
    pool.prestart(1)
    try:
        first = TrainingRun(synthetic.leaves_memory, 500, CPU, executor=pool).start()
        assert first.wait(60) and first.view().state == RunState.DONE
        budget = Limits(memory_mb=300)  # smaller than what the first run left behind
        after = TrainingRun(synthetic.short, None, CPU, executor=pool, limits=budget).start()
        assert after.wait(60)
        assert after.process_id == first.process_id  # the same worker, its memory still held
        assert after.view().state == RunState.DONE, after.view().message
    finally:
        pool.close()


def test_shutdown_stops_every_run_then_ends_every_worker_busy_ones_too():
    pool = WorkerPool()
    pool.prestart(1)
    graceful = TrainingRun(synthetic.endless, None, CPU, executor=pool).start()
    assert graceful.wait_for_first_snapshot(60)
    assert stop_every_run(STOP_GRACE_SECONDS + 5)
    assert graceful.view().state == RunState.STOPPED and graceful.view().state_dict is not None
    busy = TrainingRun(synthetic.endless, None, CPU, executor=pool).start()
    assert busy.wait_for_first_snapshot(60)
    worker = busy.process_id
    pool.close()  # the run was not stopped: its worker is ended all the same
    assert busy.wait(30) and not busy.view().alive
    assert not _alive(worker)


def test_a_worker_ends_when_its_server_is_killed():
    code = (
        "import sys, time; sys.path.insert(0, '.')\n"
        "from labs.core.workers import WorkerPool\n"
        "pool = WorkerPool(); pool.prestart(1); pool.wait_ready()\n"
        "print(*pool.process_ids(), flush=True); time.sleep(600)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    worker = int(server.stdout.readline())
    assert _alive(worker)
    server.send_signal(signal.SIGKILL)  # no shutdown, no atexit: the server is just gone
    server.wait(10)
    deadline = time.time() + 20
    while _alive(worker) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), "the worker outlived its server"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_a_cpu_run_never_borrows_a_gpu_runs_worker():
    """GPU runs have workers of their own, so a CPU run's worker never holds a CUDA context."""
    pool = WorkerPool()
    pool.prestart(1, "cuda")
    pool.prestart(1, "cpu")
    try:
        gpu_worker = next(w for w in pool._idle if w.kind == "cuda")
        lent = pool.borrow("cpu")
        assert lent.kind == "cpu" and lent is not gpu_worker
        second = pool.borrow("cpu")  # none idle of its kind: a new CPU worker, not the GPU's
        assert second.kind == "cpu" and second is not gpu_worker
        pool.give_back(second)
        pool.give_back(lent)
    finally:
        pool.close()


def test_a_worker_that_never_stops_sending_is_still_held_to_its_time():
    run = TrainingRun(synthetic.chatty, None, CPU, executor=POOL, limits=Limits(seconds=1.0)).start()
    assert run.wait(STOP_GRACE_SECONDS + 30), "a worker that keeps sending escaped the watchdog"
    view = run.view()
    assert view.state == RunState.STOPPED and "time limit" in view.message, view.message


def test_a_worker_killed_in_the_middle_of_a_message_ends_its_run_at_once():
    run = TrainingRun(synthetic.big_messages, 8, CPU, executor=POOL).start()
    assert run.wait_for_first_snapshot(60)
    os.kill(run.process_id, signal.SIGKILL)  # mid-stream: most likely mid-message
    assert run.wait(20), "the run froze with its slot"
    view = run.view()
    assert view.state == RunState.FAILED and "ended unexpectedly" in view.message, view.message


def test_a_late_stop_of_an_ended_run_does_not_reach_the_workers_next_run():
    """A closed tab's session ends after its grace and stops its runs, long ended by then: its
    worker meanwhile trains another learner's run, which must train on."""
    from labs import playground

    pool = WorkerPool()
    pool.prestart(1)
    pool.wait_ready()
    try:
        first = TrainingRun(playground.train, playground.Config(epochs=5), CPU, executor=pool).start()
        assert first.wait(60) and first.view().state == RunState.DONE
        second = TrainingRun(playground.train, playground.Config(epochs=1000), CPU, executor=pool).start()
        assert second.wait_for_first_snapshot(60)
        assert second.process_id == first.process_id  # the same worker, lent again
        first.stop()  # late: the run ended long ago
        time.sleep(1.0)
        assert second.status()["state"] == "running" and not second.view().stopping
        second.stop()
        assert second.wait(60) and second.view().state == RunState.STOPPED
    finally:
        pool.close()


def test_the_next_run_goes_to_the_worker_given_back_last_not_to_a_new_one():
    """Its memory is warm (pages faulted in, the chapter's data cached): a learner's next run
    starts as fast as the last one went."""
    pool = WorkerPool()
    pool.prestart(2)
    try:
        pool.wait_ready()
        first, second = pool.borrow(), pool.borrow()
        pool.give_back(second)
        pool.give_back(first)
        assert pool.borrow() is first  # given back last
        pool._add_one("cpu")  # a replacement: still importing torch, and cold
        assert pool.borrow() is second
    finally:
        pool.close()
