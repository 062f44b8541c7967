"""Runs on a Ray cluster (DLLAB_BACKEND=ray): the same messages, Stop, budgets and words as a
local worker, and one fair queue for every replica of the class. Against a Ray head this test
starts on loopback (tests/raycluster.py)."""

import os
import time
import uuid

import pytest
import ray
import torch

from labs import convnets, playground
from labs.core import cluster, replica
from labs.core.budget import Limits
from labs.core.class_queue import QUEUE_NAME
from labs.core.cluster import RAY
from labs.core.control import Ending
from labs.core.driver import IN_THREAD
from labs.core.failures import ending_message
from labs.core.replica import ClassSlots, ClassUsage
from labs.core.runner import RunState, TrainingRun
from labs.core.slots import Slots
from server.learners import Ledger, Rules
from tests import synthetic
from tests.raycluster import ray_head, ray_node
from tests.runs import CPU, messages


@pytest.fixture(scope="module", autouse=True)
def on_ray():
    """A cluster of this module's own, shaped as a class's across machines: a head that trains
    nothing (the web machine: no CPUs offered to runs) and a second node that trains every run
    (a GPU machine that joined it); this process joins as a replica would."""
    with ray_head(cpus=0) as reach, ray_node(reach["DLLAB_RAY_ADDRESS"], cpus=2):
        RAY.warm(2)  # two ready Ray workers, as a replica's start-up makes them
        yield reach
        for test_replica in REPLICAS:
            test_replica.alive = False
        replica.disconnect()


def on_ray_run(train, cfg, limits=None, slots=None) -> TrainingRun:
    return TrainingRun(train, cfg, CPU, executor=RAY, limits=limits, slots=slots or Slots(2)).start()


def test_a_run_on_ray_makes_the_same_messages_as_on_the_runners_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a Ray run trains on the one thread it asks for
    try:
        here = messages(IN_THREAD, "playground")
    finally:
        torch.set_num_threads(before)
    there = messages(RAY, "playground")
    kinds = [kind for kind, _ in here]
    assert kinds.count("frame") >= 3 and kinds.count("snap") >= 3
    assert [kind for kind, _ in there] == kinds
    for (kind, a), (_, b) in zip(here, there, strict=True):
        assert a == b, f"a {kind} message differs between the runner's thread and Ray"


def test_a_run_on_ray_learns_and_says_which_process_trained_it():
    run = on_ray_run(playground.train, playground.Config(epochs=10))
    assert run.wait(120)
    view = run.view()
    assert view.state == RunState.DONE and view.state_dict is not None, view.message
    assert view.history[-1]["train_loss"] < view.history[0]["train_loss"]
    assert run.process_id not in (None, os.getpid())


def test_stop_reaches_a_run_on_ray_between_two_steps_and_keeps_its_weights():
    run = on_ray_run(synthetic.endless, None)
    assert run.wait_for_first_snapshot(60)
    run.stop()
    assert run.wait(30)
    view = run.view()
    assert view.state == RunState.STOPPED and view.state_dict is not None
    assert view.message == ending_message(Ending.STOP, Limits(), True, 0)


def test_a_run_on_ray_that_cannot_hear_stop_is_cancelled_after_the_grace():
    run = on_ray_run(synthetic.one_endless_step, None)
    assert run.wait_for_first_snapshot(60)
    pid = run.process_id
    run.stop()
    assert run.wait(30)
    view = run.view()
    assert view.state == RunState.STOPPED and view.state_dict is None
    assert view.message == ending_message(Ending.STOP, Limits(), False, 0)  # a local worker's words
    assert not _alive(pid)  # the task's worker process was ended
    after = on_ray_run(synthetic.short, None)  # and the cluster trains the next run
    assert after.wait(60) and after.view().state == RunState.DONE


def test_a_run_on_ray_is_held_to_its_time():
    run = on_ray_run(synthetic.endless, None, limits=Limits(seconds=1))
    assert run.wait(60)
    view = run.view()
    assert view.state == RunState.STOPPED and view.state_dict is not None
    assert view.message == ending_message(Ending.TIME, Limits(seconds=1), True, 0)


def test_a_run_on_ray_is_held_to_its_memory():
    run = on_ray_run(synthetic.hoarder, 20, limits=Limits(memory_mb=150))
    assert run.wait(60)
    view = run.view()
    assert view.state == RunState.STOPPED, view.message
    assert "memory" in view.message.lower()


def test_a_failure_on_ray_arrives_in_words():
    bad = convnets.Config(dataset="digits8", epochs=1)
    run = on_ray_run(convnets.train, bad.__class__(**{**bad.__dict__, "channels": 99}))
    assert run.wait(60)
    view = run.view()
    assert view.state == RunState.FAILED and "Channels" in view.message and "outside" in view.message
    # the task said its last word and returned: its worker stays, warm, for the next run
    time.sleep(1.0)
    os.kill(run.process_id, 0)  # raises if the worker process was ended


# -- one queue for the class ------------------------------------------------------------------


REPLICAS = []  # every test replica: silenced when the module ends


class Replica:
    """A replica's view of a class queue of this test's own: its slots, as runner.SLOTS would be."""

    def __init__(self, queue_name: str, sizes=(1, 1, 1), silent_s: float = 15.0):
        self.replica = replica._Replica(sizes, queue_name, silent_s)
        REPLICAS.append(self.replica)
        self.slots = ClassSlots("cpu", lambda: self.replica)


def until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_two_replicas_share_one_queue_and_agree_on_its_order():
    name = f"test-{uuid.uuid4().hex[:6]}"
    a, b = Replica(name, sizes=(1, 1, 1)), Replica(name)
    started = []
    a.slots.enter("a1", "learner A", lambda: started.append("a1"))  # the class's one slot
    a.slots.enter("a2", "learner A", lambda: started.append("a2"))  # A's second run waits
    b.slots.enter("b1", "learner B", lambda: started.append("b1"))  # B's first, on the other replica
    assert started == ["a1"]
    # B trains nothing yet, so B goes first, though A's second run came earlier on its replica
    assert until(lambda: b.slots.position("b1") == 1 and a.slots.position("a2") == 2)
    assert a.slots.held_back("a2")  # A's run waits for A's own, and its replica says so
    assert until(lambda: a.slots.active == b.slots.active == 1 and b.slots.waiting == 2)
    a.slots.release("a1")  # round robin: B, shown first, goes first
    assert until(lambda: started == ["a1", "b1"])
    b.slots.release("b1")
    assert until(lambda: started == ["a1", "b1", "a2"])
    assert a.slots.leave("a2") is False  # it began: it no longer waits
    a.slots.release("a2")


def test_a_run_that_leaves_the_class_queue_never_begins():
    name = f"test-{uuid.uuid4().hex[:6]}"
    a = Replica(name)
    started = []
    a.slots.enter("a1", "learner A", lambda: started.append("a1"))
    a.slots.enter("b1", "learner B", lambda: started.append("b1"))
    assert a.slots.leave("b1") is True
    a.slots.release("a1")
    time.sleep(1.0)
    assert started == ["a1"]


def test_a_replica_that_goes_silent_frees_its_places_for_the_others():
    name = f"test-{uuid.uuid4().hex[:6]}"
    gone, alive = Replica(name, silent_s=2.0), Replica(name)
    started = []
    gone.slots.enter("g1", "learner G", lambda: started.append("g1"))  # holds the one slot
    alive.slots.enter("b1", "learner B", lambda: started.append("b1"))
    assert started == ["g1"]
    gone.replica.alive = False  # killed: it no longer asks the queue anything
    assert until(lambda: "b1" in started, timeout=15)


def test_runs_of_two_replicas_train_on_ray_through_one_queue():
    name = f"test-{uuid.uuid4().hex[:6]}"
    a, b = Replica(name), Replica(name)
    first = TrainingRun(synthetic.endless, None, CPU, executor=RAY, slots=a.slots, learner="A").start()
    assert first.wait_for_first_snapshot(60)
    second = TrainingRun(
        playground.train, playground.Config(epochs=5), CPU, executor=RAY, slots=b.slots, learner="B"
    )
    second.start()
    assert until(lambda: second.status()["queue"] == 1)  # the class's one slot is A's
    assert second.view().state == RunState.QUEUED
    first.stop()
    assert second.wait(60) and second.view().state == RunState.DONE, second.view().message
    assert first.view().state == RunState.STOPPED


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.1)
    return True


def test_a_gpu_run_asks_for_a_share_of_a_gpu_and_workers_of_its_own():
    cpu, gpu = cluster.resources_for("cpu"), cluster.resources_for("cuda")
    assert cpu["num_cpus"] == gpu["num_cpus"] == 1.0 and "num_gpus" not in cpu
    assert gpu["num_gpus"] == 0.25  # four small runs share one GPU
    assert gpu["max_calls"] == 0  # the worker stays for the next run (its cache is emptied)
    # a runtime environment of its own: Ray keeps GPU runs' workers apart from CPU runs'
    assert gpu["runtime_env"]["env_vars"]["DLLAB_WORKER_KIND"] == "cuda"


def test_a_class_queue_that_restarts_keeps_the_runs_training_and_waiting():
    name = f"test-{uuid.uuid4().hex[:6]}"
    a, b = Replica(name), Replica(name)
    started = []
    a.slots.enter("a1", "learner A", lambda: started.append("a1"))  # trains: the one slot
    b.slots.enter("b1", "learner B", lambda: started.append("b1"))  # waits
    before = a.replica.epoch
    ray.kill(a.replica.queue, no_restart=False)  # its process dies; Ray starts it again, empty
    assert until(lambda: a.replica.epoch != before and b.replica.epoch == a.replica.epoch, timeout=60)
    assert until(lambda: b.slots.position("b1") == 1)  # B waits again, first in line
    b.slots.enter("c1", "learner C", lambda: started.append("c1"))
    time.sleep(1.0)
    assert started == ["a1"]  # A's run still holds the slot in the new queue
    a.slots.release("a1")
    assert until(lambda: started == ["a1", "b1"])
    b.slots.release("b1")
    assert until(lambda: started == ["a1", "b1", "c1"])
    b.slots.release("c1")


def test_a_learners_time_and_runs_count_on_every_replica():
    """Two replicas' ledgers read one book in the class queue: time a learner trained on one
    counts against their quota on the other, and so do runs they hold there."""
    rules = Rules(training=1, waiting=0, quota_s=60, half_life_s=3600)
    here, there = Ledger(rules, book=ClassUsage()), Ledger(rules, book=ClassUsage())
    learner = f"learner-{uuid.uuid4().hex[:6]}"
    assert here.quota_refusal(learner) == ""
    there.book.add(learner, 90, rules.half_life_s)  # 90 s trained through the other replica
    assert until(lambda: "spent" in here.quota_refusal(learner))
    assert 89 < here.used(learner) <= 90

    other = Replica(QUEUE_NAME)  # another replica of this class, holding their run
    someone = f"learner-{uuid.uuid4().hex[:6]}"
    other.slots.enter("r1", someone, lambda: None)
    assert "1 in another browser" in here.refusal(someone)
    other.slots.release("r1")
    assert until(lambda: here.refusal(someone) == "")


# -- batches on Ray: one task trains many learners' runs of one shape --------------------------


def test_runs_of_one_shape_ride_one_batch_on_ray_each_as_alone():
    """The class's one slot: A opens a batch (one Ray task) and B joins it; A's second run
    waits for A's first (one run per learner). A stops: A's second rides in the batch B still
    trains in. B stops: only B ends, and A's second ends where it would alone."""
    from labs.playground_stacked import train_together
    from tests.test_stacked import assert_same_run

    name = f"test-{uuid.uuid4().hex[:6]}"
    slots = Replica(name, sizes=(1, 1, 1)).slots
    experiment = playground.EXPERIMENT

    def batched(cfg, learner):
        batch = (experiment.batch_key(cfg), experiment.stack)
        return TrainingRun(
            experiment.train, cfg, CPU, executor=RAY, slots=slots, learner=learner, batch=batch
        )

    cfgs = [
        playground.Config(seed=s, epochs=400, learning_rate=lr) for s, lr in [(0, 0.03), (1, 0.01), (2, 0.05)]
    ]
    first = batched(cfgs[0], "A").start()
    assert first.wait_for_first_snapshot(60)
    second = batched(cfgs[1], "B").start()
    assert second.wait_for_first_snapshot(60) and second.status()["state"] == "running", second.view().message
    again = batched(cfgs[2], "A").start()
    assert until(lambda: again.status()["held_back"])  # A trains a run already
    first.stop()
    assert again.wait_for_first_snapshot(60)  # it rides in the batch B trains in
    second.stop()
    for run in (first, second):
        assert run.wait(30)
        assert run.view().state == RunState.STOPPED and run.view().state_dict is not None, run.view().message
    assert again.wait(120) and again.view().state == RunState.DONE, again.view().message
    assert first.process_id == second.process_id == again.process_id != os.getpid()
    snaps = [s for _, s in train_together([cfgs[2]], CPU)]
    mine = (again.view().state_dict, again.view().history[-1]["train_loss"])
    assert_same_run(mine, (snaps[-1].state_dict, snaps[-2].metrics["train_loss"]))
    assert until(lambda: slots.active == 0)  # the batch gave the class's slot back
