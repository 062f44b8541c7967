"""One run driver: a run driven on the runner's thread (tests, AppTest) and one driven in a worker
process (the app) make the same snapshots, curve points and live frames for the same seed, so
the page tests exercise what a learner gets. The pool is injected, not a global."""

import dataclasses
import os

import pytest
import torch

from labs import playground
from labs.core.device import configure_threads
from labs.core.driver import IN_THREAD
from labs.core.runner import RunState, TrainingRun
from labs.core.workers import POOL, WorkerPool
from tests.runs import CPU, RUNS, messages


@pytest.fixture(scope="module")
def pool():
    """A pool of this test's own, beside the app's POOL."""
    pool = WorkerPool()
    pool.prestart(1)
    pool.wait_ready()
    yield pool
    pool.close()


@pytest.fixture
def worker_threads():
    """The thread count a worker sets for itself (float sums depend on it), here too."""
    before = torch.get_num_threads()
    configure_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", list(RUNS))
def test_a_run_makes_the_same_frames_on_a_thread_and_in_a_worker(name, pool, worker_threads):
    in_worker = messages(pool, name)
    on_thread = messages(IN_THREAD, name)
    kinds = [kind for kind, _ in on_thread]
    assert kinds.count("frame") >= 3 and kinds.count("points") >= 2 and kinds.count("snap") >= 3
    assert [kind for kind, _ in in_worker] == kinds
    for (kind, here), (_, there) in zip(on_thread, in_worker, strict=True):
        assert here == there, f"a {kind} message differs between the thread and the worker"


def test_a_run_is_driven_by_the_executor_it_is_given(pool):
    cfg = dataclasses.replace(playground.Config(), epochs=5)
    in_pool = TrainingRun(playground.train, cfg, CPU, executor=pool).start()
    on_thread = TrainingRun(playground.train, cfg, CPU, executor=IN_THREAD).start()
    assert in_pool.wait(120) and on_thread.wait(120)
    assert in_pool.view().state == on_thread.view().state == RunState.DONE
    assert on_thread.process_id == os.getpid()
    assert in_pool.process_id != os.getpid()
    assert in_pool.process_id in pool.process_ids()  # its worker went back to the pool it came from
    assert in_pool.process_id not in POOL.process_ids()
