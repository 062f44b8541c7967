"""Chapter 23: the same CNN through an ordinary DataLoader. A run resumed from its checkpoint ends
with the very weights of the run that never stopped (and does not when a random state is left
out); DataLoader workers start inside the lab's daemonic worker processes; every switch runs and
says what it could not do. Lessons, as ratios measured within one run: with a costly
augmentation and no workers the step waits for data most of all, and workers cut that wait
and raise the images per second; images per second rise with the batch size, then flatten."""

import functools
import math
import sys

import pytest
import torch

from labs import pipeline as lab
from labs import pipeline_data
from labs import pipeline_sweeps as sweeps
from labs.core.device import configure_threads
from labs.core.runner import RunState, TrainingRun
from labs.core.workers import WorkerPool
from tests.runs import CPU, run_view

SHORT = {"epochs": 2, "checkpoint_epoch": 1}


def resumed(cfg: lab.Config, checkpoint: dict | None = None):
    """The run, and the run resumed from its checkpoint (or from `checkpoint`)."""
    whole = run_view(lab.train, cfg)
    reference = {"final": whole.state_dict["model"], "curve": whole.series("train_loss")}
    state = checkpoint if checkpoint is not None else whole.state_dict["checkpoint"]
    return whole, run_view(functools.partial(lab.train, resume=state, reference=reference), cfg)


@pytest.mark.parametrize("workers, augmentation", [(0, "affine"), (2, "crop")])
def test_a_resumed_run_ends_with_the_weights_of_the_run_that_never_stopped(workers, augmentation):
    whole, again = resumed(lab.Config(workers=workers, augmentation=augmentation, **SHORT))
    assert whole.state_dict["checkpoint"]["epoch"] == 1
    assert again.view["resumed"]["weights_apart"] == 0.0
    for name, weights in whole.state_dict["model"].items():
        assert torch.equal(weights, again.state_dict["model"][name]), name
    assert any("Resumed from the checkpoint saved after epoch 1" in n for n in again.notes)
    per_epoch = math.ceil(len(lab.pipeline_data.digits(0).y_train) / 64)
    steps, _ = again.series("train_loss")
    assert min(steps) > per_epoch  # the resumed curve starts after the checkpoint, not at step 1


def test_a_checkpoint_without_the_loaders_random_state_drifts_away():
    cfg = lab.Config(workers=0, augmentation="affine", **SHORT)
    whole = run_view(lab.train, cfg)
    careless = dict(
        whole.state_dict["checkpoint"], loader_generator=torch.Generator().manual_seed(99).get_state()
    )
    _, again = resumed(cfg, careless)
    assert again.view["resumed"]["weights_apart"] > 1e-4


def test_dataloader_workers_start_inside_the_labs_daemonic_worker_processes():
    # forked, as a training script's are on Linux: the lab's workers are spawned, and their
    # children would be spawned too (each importing torch afresh, ~5 s, at every epoch)
    data = pipeline_data.Digits(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))
    made = pipeline_data.loader(data, 2, 2, False, torch.Generator())
    if sys.platform.startswith("linux"):
        assert made.multiprocessing_context.get_start_method() == "fork"
    pool = WorkerPool()
    try:
        run = TrainingRun(
            lab.train, lab.Config(workers=2, epochs=1, augmentation="crop"), CPU, executor=pool
        ).start()
        assert run.wait(180)
        view = run.view()
        assert view.state == RunState.DONE, view.message
        assert view.last("test_acc") > 0.5
    finally:
        pool.close()


def test_every_switch_runs_and_says_what_it_cannot_do_here():
    cfg = lab.Config(epochs=1, precision="fp16", pin_memory=True, channels_last=True, augmentation="none")
    view = run_view(lab.train, cfg)
    assert any("fp16 autocast needs a GPU" in n for n in view.notes)
    assert any("pin_memory only speeds copies to a GPU" in n for n in view.notes)
    assert view.last("test_acc") > 0.5
    operators = view.view["operators"]
    assert any(row["operator"].startswith("aten::") for row in operators)
    assert not any(row["operator"] in lab.PHASES for row in operators)  # the phase labels only group


def test_a_compiled_model_trains_and_its_weights_load_into_the_plain_one():
    view = run_view(lab.train, lab.Config(epochs=1, compile=True, augmentation="none", checkpoint_epoch=0))
    assert view.last("test_acc") > 0.5
    assert "checkpoint" not in view.state_dict
    assert not any(k.startswith("_orig_mod") for k in view.state_dict["model"])


@pytest.fixture(scope="module")
def default_run(seed):
    return run_view(lab.train, lab.Config(seed=seed))


@pytest.mark.lesson
def test_with_a_costly_augmentation_and_no_workers_the_step_waits_for_data_most(default_run, lesson):
    lesson.expect("held-out accuracy after 4 epochs", default_run.last("test_acc"), ">", 0.9)
    answer, evidence = lab.QUESTIONS[0].outcome(default_run)
    lesson.expect("slowest part of a step, affine and no workers", answer, "==", "waiting for data", evidence)


@pytest.fixture(scope="module")
def workers_sweep(seed):
    """Measured with the training loop on the threads a lab worker process gives it here
    (configure_threads: 1 on 2 cores): the test process's own 2 would fight the workers."""
    before = torch.get_num_threads()
    configure_threads()
    try:
        return run_view(sweeps.sweep, sweeps.SweepConfig(sweep="workers", most_workers=2, seed=seed))
    finally:
        torch.set_num_threads(before)


@pytest.mark.lesson
def test_workers_cut_the_wait_for_data_and_raise_images_per_second(workers_sweep, lesson):
    rows = workers_sweep.view["rows"]
    assert [r["setting"] for r in rows] == [0, 1, 2]
    lesson.expect("share of time waiting for data, no workers", rows[0]["data wait share"], ">", 0.4)
    waits = [r["data wait share"] for r in rows]
    # measured over seeds 0-2 on 2 cores: 0.48-0.53 of the wait left, 1.54-1.58× the images/s
    lesson.expect("wait share with the best number of workers / none", min(waits[1:]) / waits[0], "<", 0.7)
    speedup = max(r["images/s"] for r in rows[1:]) / rows[0]["images/s"]
    lesson.expect("images/s, best with workers / none", speedup, ">", 1.15)
    answer, evidence = lab.SWEEP_QUESTIONS[1].outcome(workers_sweep)
    lesson.expect("question: waiting with no workers", answer, "==", "more than half", evidence)


@pytest.fixture(scope="module")
def batch_sweep(seed):
    return run_view(sweeps.sweep, sweeps.SweepConfig(sweep="batch", seed=seed))


@pytest.mark.lesson
def test_images_per_second_rise_with_the_batch_then_flatten(batch_sweep, lesson):
    rows = batch_sweep.view["rows"]
    assert [r["setting"] for r in rows] == [8, 16, 32, 64, 128, 256, 512]
    speed = [r["images/s"] for r in rows]
    lesson.expect("images/s, fastest / 8 a step", max(speed) / speed[0], ">", 1.5)
    lesson.expect("images/s, 512 / the fastest of 64-256", speed[-1] / max(speed[3:-1]), "<", 1.2)
    answer, evidence = lab.SWEEP_QUESTIONS[0].outcome(batch_sweep)
    lesson.expect("question: images/s by batch size", answer, "==", "rises, then flattens", evidence)


def test_the_operator_table_reads_what_pytorchs_own_table_says():
    """The live operator table sums each operator's own time from the profiler's raw events (20x
    faster than key_averages on a window of augmented batches): the same calls and times."""
    from torch.profiler import ProfilerActivity, profile, record_function

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3)
    )
    x = torch.randn(8, 1, 8, 8)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            with record_function("forward"):
                loss = net(x).square().mean()
            with record_function("backward"):
                loss.backward()
    ours = lab.cpu_self_times(prof.profiler.kineto_results.events())
    theirs = {e.key: (e.count, e.self_cpu_time_total) for e in prof.key_averages()}
    assert set(ours) == set(theirs)
    for name, (count, self_us) in theirs.items():
        assert ours[name][0] == count, name
        assert ours[name][1] == pytest.approx(self_us, rel=1e-3, abs=1.0), name
    table = lab.top_operators(prof, 3, CPU)
    assert table and all(row["operator"] not in lab.PHASES for row in table)
    assert sum(row["share of CPU time"] for row in table) <= 1.0 + 1e-9
