"""Learners' runs of one shape trained as one batch by the runner (labs/core/batches.py): one
slot for the batch, runs joining it as they arrive, and each member still its own run, ending
where it would alone, stopped alone, with its own frames and its share of the time."""

import pytest
import torch

from figures.views import playground as playground_views
from labs import playground
from labs.core import batches
from labs.core.budget import Limits
from labs.core.driver import IN_THREAD
from labs.core.failures import Diverged
from labs.core.runner import RunState, TrainingRun
from labs.core.slots import Slots
from labs.core.stackdrive import Member, StackJob, drive_stack
from labs.core.workers import WorkerPool
from labs.playground_stacked import train_together
from tests.test_stacked import assert_same_run

CPU = torch.device("cpu")
EXPERIMENT = playground.EXPERIMENT


def cfg_of(seed: int, **knobs) -> playground.Config:
    return playground.Config(seed=seed, epochs=knobs.pop("epochs", 20), **knobs)


def batched(cfg, slots: Slots, learner: str = "", executor=IN_THREAD, views=None) -> TrainingRun:
    """A run as the server starts a playground run (server/sessions.py start_run)."""
    batch = (EXPERIMENT.batch_key(cfg), EXPERIMENT.stack)
    return TrainingRun(
        EXPERIMENT.train, cfg, CPU, slots=slots, executor=executor, learner=learner, batch=batch, views=views
    )


def alone(cfg) -> tuple[dict, float]:
    """The run trained alone: its final weights and last measured training loss."""
    snaps = [s for _, s in train_together([cfg], CPU)]
    return snaps[-1].state_dict, snaps[-2].metrics["train_loss"]


def result(run: TrainingRun) -> tuple[dict, float]:
    view = run.view()
    return view.state_dict, view.history[-1]["train_loss"]


def wait_for_batch(run: TrainingRun, timeout: float = 30) -> None:
    """Until `run` trains in a batch others can join."""
    assert run.wait_for_first_snapshot(timeout) and run.status()["state"] == "running"


@pytest.fixture
def slots():
    """One run slot: a run that finds it taken joins the batch training there."""
    yield Slots(1, per_learner=1)
    assert batches.BATCHES.open_members() == 0  # every batch closed with its last member


def test_runs_arriving_together_train_as_one_batch_in_one_slot_each_as_alone(slots):
    cfgs = [cfg_of(0), cfg_of(1, learning_rate=0.05, dataset="moons"), cfg_of(7, learning_rate=0.01)]
    first = batched(cfgs[0], slots, "A").start()
    wait_for_batch(first)
    others = [batched(cfg, slots, learner).start() for cfg, learner in zip(cfgs[1:], "BC")]
    assert slots.active == 1 and slots.waiting == 0  # they joined: no slot taken, nobody queued
    runs = [first, *others]
    assert all(run.wait(120) for run in runs)
    for run, cfg in zip(runs, cfgs):
        assert run.view().state == RunState.DONE, run.view().message
        assert_same_run(result(run), alone(cfg))
    assert slots.active == 0 and all(slots.training_of(who) == 0 for who in "ABC")
    # each costs its share of the batch: together, no more than the batch's own time
    assert sum(run.running_seconds for run in runs) <= first.view().elapsed_s + 0.5


def test_stop_of_one_member_ends_only_its_run(slots):
    cfgs = {who: cfg_of(seed) for who, seed in zip("ABC", (0, 1, 2))}
    runs = {"A": batched(cfgs["A"], slots, "A").start()}
    wait_for_batch(runs["A"])
    runs |= {who: batched(cfgs[who], slots, who).start() for who in "BC"}
    assert runs["B"].wait_for_first_snapshot(30)
    runs["B"].stop()
    assert all(run.wait(120) for run in runs.values())
    stopped = runs["B"].view()
    assert stopped.state == RunState.STOPPED and stopped.state_dict is not None  # kept its weights
    assert 0 < stopped.step < stopped.total_steps
    for who in "AC":
        assert runs[who].view().state == RunState.DONE
        assert_same_run(result(runs[who]), alone(cfgs[who]))


def test_a_lone_run_is_a_batch_of_one_and_frees_its_slot(slots):
    cfg = cfg_of(3, epochs=15)
    run = batched(cfg, slots, "A", views=playground_views.VIEWS.draw).start()
    assert run.wait(120)
    view = run.view()
    assert view.state == RunState.DONE and view.step == view.total_steps
    assert_same_run(result(run), alone(cfg))
    assert {"boundary", "loss"} <= run.frames.keys()  # its live frames, drawn as for any run
    assert slots.active == 0


def test_a_learner_at_their_cap_queues_instead_of_joining(slots):
    first = batched(cfg_of(0, epochs=400), slots, "A").start()
    wait_for_batch(first)
    second = batched(cfg_of(1, epochs=400), slots, "A").start()  # the same learner, another tab
    try:
        assert second.status()["state"] == "queued" and slots.held_back(second)
    finally:
        first.stop()
        second.stop()
        assert first.wait(30) and second.wait(30)


def test_a_full_batch_sends_the_next_run_to_the_queue(slots, monkeypatch):
    monkeypatch.setattr(batches.BATCHES, "max_members", 2)
    runs = [batched(cfg_of(0, epochs=400), slots, "A").start()]
    wait_for_batch(runs[0])
    runs.append(batched(cfg_of(1, epochs=400), slots, "B").start())
    runs.append(batched(cfg_of(2, epochs=400), slots, "C").start())  # the batch is full
    try:
        assert [run.status()["state"] for run in runs] == ["running", "running", "queued"]
        assert slots.waiting == 1
    finally:
        for run in runs:
            run.stop()
        assert all(run.wait(30) for run in runs)


def test_runs_queued_before_a_batch_opened_ride_in_it_when_it_opens(slots):
    """The slot busy with other work when three learners press Train: they queue; when it
    frees, the first opens a batch and the other two leave the queue to join it at once."""
    other = TrainingRun(EXPERIMENT.train, cfg_of(9, epochs=1000), CPU, slots=slots, executor=IN_THREAD)
    other.start()  # a run that trains alone holds the only slot
    assert other.wait_for_first_snapshot(30)
    runs = [batched(cfg_of(seed, epochs=1000), slots, who).start() for seed, who in zip((1, 2, 3), "BCD")]
    try:
        assert slots.waiting == 3 and all(run.status()["state"] == "queued" for run in runs)
        other.stop()
        assert all(run.wait_for_first_snapshot(30) for run in runs)  # all three train now
        assert [run.status()["state"] for run in runs] == ["running"] * 3
        assert slots.waiting == 0 and slots.active == 1  # in one batch, in the one slot
    finally:
        for run in [other, *runs]:
            run.stop()
        assert all(run.wait(30) for run in [other, *runs])


def test_a_full_batch_takes_a_queued_run_when_a_member_leaves(slots, monkeypatch):
    monkeypatch.setattr(batches.BATCHES, "max_members", 2)
    runs = [batched(cfg_of(0, epochs=1000), slots, "A").start()]
    wait_for_batch(runs[0])
    runs += [batched(cfg_of(s, epochs=1000), slots, who).start() for s, who in zip((1, 2), "BC")]
    try:
        assert [run.status()["state"] for run in runs] == ["running", "running", "queued"]
        runs[1].stop()  # B leaves the batch: C takes its place at once, without a slot
        assert runs[1].wait(30)
        assert runs[2].wait_for_first_snapshot(30) and runs[0].status()["state"] == "running"
        assert slots.waiting == 0 and slots.active == 1
    finally:
        for run in runs:
            run.stop()
        assert all(run.wait(30) for run in runs)


def test_runs_of_other_shapes_never_share_a_batch(slots):
    first = batched(cfg_of(0, epochs=400), slots, "A").start()
    wait_for_batch(first)
    wider = batched(cfg_of(1, epochs=400, units=6), slots, "B").start()
    try:
        assert wider.status()["state"] == "queued"
    finally:
        first.stop()
        wider.stop()
        assert first.wait(30) and wider.wait(30)


def test_batches_spread_over_free_slots_then_runs_join_the_smallest():
    slots = Slots(2, per_learner=1)
    runs = [batched(cfg_of(0, epochs=400), slots, "A").start()]
    wait_for_batch(runs[0])
    runs.append(batched(cfg_of(1, epochs=400), slots, "B").start())  # a free slot: its own batch
    wait_for_batch(runs[1])
    assert slots.active == 2
    runs += [batched(cfg_of(s, epochs=400), slots, who).start() for s, who in zip((2, 3), "CD")]
    try:
        assert slots.active == 2 and slots.waiting == 0  # C and D joined, one in each batch
        assert len({run.process_id for run in runs}) == 1  # (thread batches: one process)
        sizes = sorted(len(b.members) for group in batches.BATCHES._open.values() for b in group)
        assert sizes == [2, 2]
    finally:
        for run in runs:
            run.stop()
        assert all(run.wait(30) for run in runs)


def test_on_a_gpu_a_run_joins_an_open_batch_before_taking_a_free_slot():
    """One batch per GPU: a GPU run of a key with an open batch joins it even while a slot is
    free (the slots of one GPU share it; one stack there means one CUDA context and wider
    kernels). The batch trains where it opened (here, a CPU thread)."""
    slots = Slots(2, per_learner=1)
    first = batched(cfg_of(0, epochs=400), slots, "A").start()
    wait_for_batch(first)
    cfg = cfg_of(1, epochs=400)
    gpu_run = TrainingRun(
        EXPERIMENT.train, cfg, torch.device("cuda"), slots=slots, executor=IN_THREAD, learner="B",
        batch=(EXPERIMENT.batch_key(cfg), EXPERIMENT.stack),
    ).start()  # fmt: skip
    try:
        assert gpu_run.wait_for_first_snapshot(30) and gpu_run.status()["state"] == "running"
        assert slots.active == 1  # it rode in A's batch: the second slot stayed free
        assert [len(b.members) for group in batches.BATCHES._open.values() for b in group] == [2]
    finally:
        for run in (first, gpu_run):
            run.stop()
        assert first.wait(30) and gpu_run.wait(30)


class _Diverging:
    """A stack whose member "2" diverges at its first step; the others end at their second."""

    def __init__(self, device):
        self.members = []

    def add(self, key, cfg, control):
        self.members.append(key)

    def per_second(self):
        return None  # full speed, as the contract's stacks say

    def step(self):
        from labs.core.snapshot import Snapshot

        out = [(key, Diverged("the loss became NaN at step 1.")) for key in self.members if key == 2]
        out += [(key, Snapshot(1, 1, final=True)) for key in self.members if key != 2]
        self.members = []
        return out


def test_a_diverging_member_fails_in_the_usual_words_and_the_others_end():
    said = []
    commands = iter([[("join", Member(2, None, Limits()))], [("close",)]])
    job = StackJob(_Diverging, CPU, Member(1, None, Limits()))
    drive_stack(job, lambda wait: next(commands, [("close",)]), lambda kind, payload: said.append(payload))
    ends = {m: (kind, payload) for m, kind, payload in said if kind in ("end", "error")}
    assert ends[1] == ("end", None)
    assert ends[2][0] == "error" and ends[2][1].startswith("Training diverged")
    assert "smaller learning rate" in ends[2][1]


def test_a_batch_in_a_worker_process_trains_its_members_as_alone():
    pool = WorkerPool()
    slots = Slots(1, per_learner=1)
    try:
        cfgs = [cfg_of(0, epochs=60), cfg_of(1, epochs=60, learning_rate=0.05)]
        first = batched(cfgs[0], slots, "A", executor=pool).start()
        wait_for_batch(first, timeout=120)
        second = batched(cfgs[1], slots, "B", executor=pool).start()
        assert slots.active == 1
        assert first.wait(120) and second.wait(120)
        assert first.process_id == second.process_id  # one worker trained both
        for run, cfg in zip((first, second), cfgs):
            assert run.view().state == RunState.DONE, run.view().message
            assert_same_run(result(run), alone(cfg))
        assert slots.active == 0
    finally:
        pool.close()


def _chapter_cases():
    """(chapter lab, its live views, two learners' configs, a run's result as alone)."""
    from figures.views import initialization as init_views
    from figures.views import normalization as norm_views
    from figures.views import optimizers as race_views
    from labs import initialization, normalization, optimizers
    from tests.test_stacked_chapters import deep, deep_alone, race, race_alone, side_by_side_of

    def last_of(made: list):
        return made[-1].state_dict

    return {
        "initialization": (
            initialization.EXPERIMENT,
            init_views.VIEWS.draw,
            [
                deep(0, init="kaiming", activation="relu", steps=200),
                deep(1, init="xavier", activation="tanh", steps=200),
            ],
            lambda cfg: deep_alone(cfg)[0],
        ),
        "normalization": (
            normalization.EXPERIMENT,
            norm_views.VIEWS.draw,
            [
                normalization.Config(seed=s, depth=4, steps=100, variants=("plain", "batchnorm"))
                for s in (0, 1)
            ],
            lambda cfg: last_of(side_by_side_of({0: cfg})[0]),
        ),
        "optimizers": (
            optimizers.NET,
            race_views.draw_net,
            [race(0, steps=400), race(1, steps=400, schedule="one_cycle")],
            lambda cfg: last_of(race_alone(cfg)),
        ),
    }


@pytest.mark.parametrize("chapter", ["initialization", "normalization", "optimizers"])
def test_mlp_chapters_runs_batch_in_a_worker_with_their_views_each_as_alone(chapter):
    """Chapters 4, 5 and 3's race, as the server drives them: their stack pickled to a worker
    process, two learners' runs in one batch, each with its live frames, each ending as alone."""
    experiment, views, cfgs, alone_weights = _chapter_cases()[chapter]
    pool = WorkerPool()
    slots = Slots(1, per_learner=1)
    try:
        runs = []
        for cfg, learner in zip(cfgs, "AB"):
            batch = (experiment.batch_key(cfg), experiment.stack)
            run = TrainingRun(
                experiment.train,
                cfg,
                CPU,
                slots=slots,
                executor=pool,
                learner=learner,
                batch=batch,
                views=views,
            ).start()
            runs.append(run)
            wait_for_batch(run, timeout=120)
        assert slots.active == 1 and runs[0].process_id == runs[1].process_id
        for run, cfg in zip(runs, cfgs):
            assert run.wait(120) and run.view().state == RunState.DONE, run.view().message
            assert run.frames, "no live frames reached the run"
            torch.testing.assert_close(run.view().state_dict, alone_weights(cfg), rtol=1e-5, atol=1e-6)
    finally:
        pool.close()
