"""The shared core: hooks clean up, the runner queues, stops, and reports failures in words."""

import dataclasses
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from labs import playground
from labs.core import budget
from labs.core.control import steps
from labs.core.failures import Diverged, explain_failure
from labs.core.hooks import hooks_left, layer_stats, record_activations
from labs.core.runner import RunState, Slots, TrainingRun
from labs.core.snapshot import Snapshot

CPU = torch.device("cpu")
TINY = playground.Config(epochs=10, points=200)


def test_hooks_are_removed_after_a_run_and_after_an_exception():
    model = playground.build_model(TINY)
    acts, grads = playground.recorded_layers(model)
    with record_activations(acts) as latest:
        model(torch.randn(5, 2)).sum().backward()
        assert hooks_left(model) == len(acts)
        stats = layer_stats(acts, latest, grads)
    assert hooks_left(model) == 0
    assert set(stats) == {"layer 1", "layer 2", "output"} and stats["layer 1"]["grad_norm"] > 0
    with pytest.raises(RuntimeError):
        with record_activations(acts):
            raise RuntimeError("boom")
    assert hooks_left(model) == 0


def test_dead_relu_units_are_counted():
    model = playground.build_model(TINY)
    with torch.no_grad():
        model.blocks[0].linear.bias.fill_(-100.0)  # every first-layer ReLU outputs 0
    acts, grads = playground.recorded_layers(model)
    with record_activations(acts) as latest:
        model(torch.randn(50, 2))
        assert layer_stats(acts, latest, grads)["layer 1"]["dead"] == 1.0


def test_a_run_trains_to_done_and_keeps_weights():
    run = TrainingRun(playground.train, TINY, CPU).start()
    assert run.wait(60)
    view = run.view()
    assert view.state == RunState.DONE and view.progress == 1.0
    assert view.history[-1]["train_loss"] < view.history[0]["train_loss"]
    assert view.state_dict is not None and view.layer_history
    # A metric's latest value skips rows without it (end-only metrics, a variant that dropped out).
    rows = dataclasses.replace(view, history=[{"a": 1.0}, {"b": 2.0}, {"a": 3.0, "b": 4.0}, {"b": 5.0}])
    assert (rows.last("a"), rows.last("b"), rows.last("c"), rows.last("c", 0.0)) == (3.0, 5.0, None, 0.0)


def test_stop_keeps_partial_curves_and_weights():
    run = TrainingRun(playground.train, playground.Config(epochs=1000), CPU).start()
    assert run.wait_for_first_snapshot(30)
    time.sleep(0.3)
    run.stop()
    assert run.wait(30)
    view = run.view()
    assert view.state == RunState.STOPPED and "kept" in view.message
    assert 0 < view.latest.step < view.latest.total_steps
    assert view.history and view.state_dict is not None


def _failing(cfg, device):
    yield Snapshot(1, 10, {"loss": 1.0})
    raise Diverged("the loss became nan at step 2.")


def test_a_failed_run_reports_in_words_and_keeps_its_curves():
    run = TrainingRun(_failing, None, CPU).start()
    run.wait(10)
    view = run.view()
    assert view.state == RunState.FAILED and "smaller learning rate" in view.message
    assert view.history == [{"step": 1, "loss": 1.0}]


def test_out_of_memory_is_explained_for_a_learner():
    message = explain_failure(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert message.startswith("Out of GPU memory") and "smaller" in message
    assert "ValueError" in explain_failure(ValueError("odd"))


def _slow(cfg, device):
    step = 0
    for step in steps(999):
        time.sleep(0.01)
        yield Snapshot(step, 1000, {"loss": 1.0 / step})
    yield Snapshot(step, 1000, final=True)


def test_runs_beyond_the_limit_wait_in_a_visible_queue():
    slots = Slots(1)
    first = TrainingRun(_slow, None, CPU, slots=slots).start()
    first.wait_for_first_snapshot(5)
    second = TrainingRun(_slow, None, CPU, slots=slots).start()
    third = TrainingRun(_slow, None, CPU, slots=slots).start()
    time.sleep(0.3)
    assert second.view().state == RunState.QUEUED and second.view().queue_position == 1
    assert third.view().queue_position == 2
    third.stop()  # leaving the queue frees nothing but its place
    assert third.wait(5) and third.view().state == RunState.STOPPED
    first.stop()
    assert second.wait_for_first_snapshot(5) and second.view().state == RunState.RUNNING
    second.stop()
    assert second.wait(5) and slots.active == 0


def test_labs_import_no_streamlit():
    root = Path(__file__).resolve().parents[1]
    imports = re.compile(r"^\s*(import streamlit|from streamlit)", re.MULTILINE)
    offenders = [p for p in (root / "labs").rglob("*.py") if imports.search(p.read_text())]
    assert offenders == []
    code = (
        "import sys, labs.playground, labs.convnets, labs.optimizers, labs.core.workers; "
        "sys.exit('streamlit' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_slots_are_thread_safe_under_contention():
    slots, peak, active = Slots(2), [0], [0]
    lock = threading.Lock()

    def work():
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01)
        with lock:
            active[0] -= 1
        slots.release(threading.current_thread())  # each thread is its own ticket

    threads = [threading.Thread(target=work) for _ in range(12)]
    entering = [threading.Thread(target=slots.enter, args=(t, "", t.start)) for t in threads]
    [e.start() for e in entering]
    [e.join() for e in entering]
    deadline = time.time() + 10
    while any(not t.ident or t.is_alive() for t in threads) and time.time() < deadline:
        time.sleep(0.01)
    assert peak[0] == 2 and slots.active == 0 and slots.waiting == 0


def test_a_free_slot_goes_to_the_learner_training_least_not_to_the_earliest_tab():
    slots, started = Slots(2, per_learner=2), []

    def begin(name):
        return lambda: started.append(name)

    slots.enter("a1", "browser A", begin("a1"))
    slots.enter("a2", "browser A", begin("a2"))  # both slots: A trains two runs
    slots.enter("a3", "browser A", begin("a3"))  # A's third tab waits, first in line
    slots.enter("b1", "browser B", begin("b1"))  # then B's first run
    assert started == ["a1", "a2"] and slots.position("b1") == 1 and slots.position("a3") == 2
    slots.release("a1")  # a slot frees: B trains nothing yet, so B goes first
    assert started == ["a1", "a2", "b1"]
    slots.release("b1")
    assert started[-1] == "a3"


def test_a_position_once_shown_is_kept_when_a_learners_own_run_ends():
    slots, started = Slots(1, per_learner=1), []
    slots.enter("a1", "browser A", lambda: started.append("a1"))
    slots.enter("a2", "browser A", lambda: started.append("a2"))  # waits for A's own run
    slots.enter("b1", "browser B", lambda: started.append("b1"))
    assert slots.position("b1") == 1 and slots.position("a2") == 2
    slots.release("a1")  # A and B now train nothing: B, shown first, goes first (round robin)
    assert started == ["a1", "b1"]


def test_a_learner_trains_at_most_their_share_at_once_even_with_slots_free():
    slots, started = Slots(4, per_learner=1), []
    for name in ("a1", "a2", "a3"):
        slots.enter(name, "browser A", lambda name=name: started.append(name))
    assert started == ["a1"] and slots.waiting == 2  # two slots stay free for others
    slots.enter("b1", "browser B", lambda: started.append("b1"))
    assert started == ["a1", "b1"]


def test_waiting_runs_hold_no_thread():
    slots = Slots(1)
    first = TrainingRun(_slow, None, CPU, slots=slots).start()
    first.wait_for_first_snapshot(5)
    threads = threading.active_count()
    waiting = [TrainingRun(_slow, None, CPU, slots=slots).start() for _ in range(10)]
    assert threading.active_count() == threads and slots.waiting == 10
    for run in waiting:
        run.stop()
    first.stop()
    assert all(run.wait(5) for run in [first, *waiting])
    assert {run.view().state for run in waiting} == {RunState.STOPPED}


def test_a_runs_time_counts_from_train_not_from_when_it_was_made():
    """A run made ahead of its Train press (a bench sets its class up first) counts its
    time, and its time in the queue, from start(): it did not wait before it was asked to."""
    from labs.core.driver import IN_THREAD

    run = TrainingRun(playground.train, playground.Config(epochs=5), CPU, executor=IN_THREAD)
    time.sleep(1.0)
    assert run.start().wait(60)
    view = run.view()
    assert view.state == RunState.DONE and view.elapsed_s - view.training_s < 1.0


def test_an_ended_run_shows_its_estimate_beside_what_it_took():
    from components.live import done_words
    from labs.core.driver import IN_THREAD

    cfg = playground.Config(epochs=10)
    run = TrainingRun(playground.train, cfg, CPU, executor=IN_THREAD, cost=playground.cost).start()
    assert run.wait(60)
    view, status = run.view(), run.status()
    assert view.state == RunState.DONE
    assert view.estimate_s == status["estimate"] == run.verdict.seconds > 0
    assert 0 < view.training_s <= view.elapsed_s
    said = done_words(view.elapsed_s, view.training_s, view.estimate_s)
    assert re.fullmatch(r"Done in \d+\.\d s \(estimated about \d+ s\)\.", said), said
    assert (
        done_words(9.1, 2.8, 2.0)
        == "Done in 9.1 s: 6.3 s in the queue, 2.8 s training (estimated about 2 s)."
    )
    # a run without a cost function has no estimate, and says nothing of one
    bare = TrainingRun(playground.train, cfg, CPU, executor=IN_THREAD).start()
    assert bare.wait(60) and bare.view().estimate_s is None and done_words(1.0, 1.0, None) == "Done in 1.0 s."


# ---------------------------------------------------------------- estimates, per kind of work


def test_each_kind_of_work_is_timed_at_start_up_and_estimates_use_its_rate():
    speed = budget.measured_speed("cpu")
    rates = dict(speed.rates)
    assert set(rates) == set(budget.KINDS) - {"dense"} and all(r > 0 for r in rates.values())
    assert speed.rate("dense") == speed.flops_per_second == speed.rate("unmeasured kind")
    made_up = budget.Speed(1e10, 0.0, (("conv", 2.5e9),))
    dense = budget.Cost(params=1, activations=1, steps=10, step_flops=1e9, step_ops=0)
    conv = dataclasses.replace(dense, kind="conv")
    assert budget.seconds(conv, made_up) == pytest.approx(4 * budget.seconds(dense, made_up))
    # side by side, the run's bulk decides its kind
    assert (conv + dataclasses.replace(dense, step_flops=1e6)).kind == "conv"
    assert (dataclasses.replace(conv, step_flops=1e6) + dense).kind == "dense"


def test_the_digits_are_standardized_once_per_seed_and_shared_by_the_runs_of_a_process():
    from labs.core import mlp

    first = mlp.digits(3)
    again, cut = mlp.digits(3), mlp.digits(3, train_size=100)
    assert all(a is b for a, b in zip(first, again))  # no fresh copy for the next variant or run
    assert cut[0].data_ptr() == first[0].data_ptr() and len(cut[0]) == 100  # a view, not a copy
    X_train = first[0]
    assert abs(X_train.mean().item()) < 1e-4 and abs(X_train.std().item() - 1) < 1e-3
    assert mlp.digits(4)[1].tolist() != first[1].tolist()  # another seed: another split
