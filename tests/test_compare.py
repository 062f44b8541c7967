"""Side-by-side runs: lockstep, isolation of each variant's randomness, Stop, divergence."""

import time

import pytest
import torch

from figures.variants import layer_history_of, metric
from labs import regularization
from labs.core.compare import side_by_side
from labs.core.control import Control, installed, steps
from labs.core.failures import Diverged
from labs.core.runner import TrainingRun
from labs.core.snapshot import Cadence, Snapshot, Stopwatch, timed_by

CPU = torch.device("cpu")


def counting(total, fail_at=None):
    """A toy loop: one snapshot per step, its metric is the step; Stop keeps 'weights'."""
    step = 0
    for step in steps(total):
        if step == fail_at:
            raise Diverged(f"the loss became nan at step {step}.")
        yield Snapshot(step, total, {"loss": 1 / step}, {"layer 1": {"grad_rms": 0.1}})
    yield Snapshot(step, total, final=True, state_dict={"w": torch.tensor([float(step)])})


def test_variants_advance_in_lockstep_and_all_hand_over_their_weights():
    snaps = list(side_by_side({"a": counting(10), "b": counting(10)}, CPU))
    order = [next(iter(s.metrics)).split(":")[0] for s in snaps if s.metrics]
    assert order[:6] == ["a", "b", "a", "b", "a", "b"]  # neither runs ahead of the other
    final = snaps[-1]
    assert final.final and set(final.state_dict) == {"a", "b"}
    assert {v["status"] for v in final.view["variants"].values()} == {"done"}


def test_stop_ends_every_variant_and_keeps_their_weights():
    control = Control()
    with installed(control):  # as the driver does: the loops hear Stop through it
        gen = side_by_side({"a": counting(1000), "b": counting(1000)}, CPU)
        for _ in range(6):
            next(gen)
        control.stop.set()
        final = next(gen)
    assert final.final
    assert set(final.state_dict) == {"a", "b"}
    assert all(v["status"] == "stopped" for v in final.view["variants"].values())
    assert final.state_dict["a"]["w"].item() < 1000


def test_a_diverging_variant_drops_out_and_the_others_finish():
    snaps = list(side_by_side({"plain": counting(20, fail_at=4), "norm": counting(20)}, CPU))
    variants = snaps[-1].view["variants"]
    assert variants["plain"]["status"].startswith("diverged")
    assert variants["norm"]["status"] == "done" and variants["norm"]["step"] == 20
    assert any("plain diverged" in note for s in snaps for note in s.notes)
    assert set(snaps[-1].state_dict) == {"norm"}


def test_metrics_and_layers_are_kept_apart_by_variant():
    run = TrainingRun(
        lambda cfg, device: side_by_side({"a": counting(5), "b": counting(5)}, device), None, CPU
    )
    view = run.start().wait(10) and run.view()
    assert any(metric("a", "loss") in row for row in view.history)
    assert [s for s, _ in layer_history_of(view.layer_history, "b")] == [1, 2, 3, 4, 5]
    assert set(layer_history_of(view.layer_history, "a")[0][1]) == {"layer 1"}


def test_each_variant_keeps_its_own_random_stream():
    """Dropout draws from the global generator: a variant must train exactly as it would
    alone, whatever else shares its run."""
    cfg = regularization.Config(epochs=6, train_size=100, width=64, dropout=0.5, augment=("shift", "noise"))
    other = regularization.Config(epochs=6, train_size=100, width=32, dropout=0.3)
    alone = [s for s in regularization.train_one(cfg, CPU) if s.metrics][-1].metrics
    snaps = side_by_side(
        {"x": regularization.train_one(other, CPU), "me": regularization.train_one(cfg, CPU)}, CPU
    )
    together = [s for s in snaps if s.metrics and metric("me", "val_loss") in s.metrics][-1].metrics
    assert together[metric("me", "val_loss")] == alone["val_loss"]
    assert together[metric("me", "train_acc")] == alone["train_acc"]


def test_a_cadence_counts_only_its_own_runs_time():
    watch = Stopwatch()
    with timed_by(watch):
        cadence = Cadence(total=1000, max_snaps=1000, min_seconds=0.05)
        assert cadence.due(1)
    time.sleep(0.2)  # another variant trains meanwhile: not this one's time
    with timed_by(watch):
        assert not cadence.due(2)  # only ~0 s of its own time has passed
    assert watch.now() < 0.1


def test_a_cadence_is_measured_along_only_half_way_to_its_next_snapshot():
    now = [0.0]
    cadence = Cadence(total=100, max_snaps=10, min_seconds=1.0)
    cadence._now = lambda: now[0]  # a clock the test moves
    assert cadence.due(1)
    assert not cadence.along(1)  # its own snapshot was just taken
    assert not cadence.due(2)  # (the snapshot cost no time on this clock)
    now[0] = 0.4
    assert not cadence.due(5) and not cadence.along(5)  # under half the wait, under half the steps
    now[0] = 0.6
    assert not cadence.along(5)  # half the wait, not half of its 10 steps
    assert cadence.along(6)  # half of both: taken along, and counted as its snapshot
    now[0] = 1.2
    assert not cadence.due(10)  # the wait counts from the snapshot taken along


@pytest.mark.parametrize("share", [None, 0.08])
def test_a_cadence_keeps_snapshots_to_their_share_of_the_run(share):
    """A snapshot that cost 0.1 s is followed by the next only once it is at most its share
    (SNAPSHOT_SHARE, or the chapter's own) of the time since it began: watching a run costs it
    at most ~10%."""
    from labs.core.snapshot import SNAPSHOT_SHARE

    now = [0.0]
    cadence = Cadence(total=10_000, max_snaps=10_000, **({} if share is None else {"share": share}))
    share = share or SNAPSHOT_SHARE
    cadence._now = lambda: now[0]
    assert cadence.due(1)
    now[0] = 0.1  # the snapshot (and a step) took 0.1 s
    assert not cadence.due(2)
    now[0] = 0.1 / share - 0.01
    assert not cadence.due(3)
    now[0] = 0.1 / share + 0.01
    assert cadence.due(4)
    assert 0.1 / (now[0] - 0.0) <= share


def test_a_snapshots_cost_leaves_out_the_step_made_after_it():
    """A snapshot's cost is read at the next step's call, one step later: a cheap snapshot in
    a loop of slow steps is not charged for the step (it would be held back for nothing)."""
    now = [0.0]
    cadence = Cadence(total=10_000, max_snaps=10_000)
    cadence._now = lambda: now[0]
    for step in range(1, 40):  # steps of 50 ms; the first snapshot at step 1 (its cost: unknown)
        cadence.due(step)
        now[0] += 0.05
    assert cadence.due(40)  # long enough since step 1
    now[0] += 0.05 + 0.002  # the next step, and the snapshot's own 2 ms
    cadence.due(41)
    assert abs(cadence._cost - 0.002) < 0.005  # not the 52 ms since it began
