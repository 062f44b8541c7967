"""Same-shaped runs trained as one stack (labs/stacked.py, labs/playground_stacked.py):
each member trains as its run alone, whatever else the stack holds."""

import itertools
from dataclasses import replace

import pytest
import torch

from labs import playground, stacked
from labs.core import snapshot
from labs.core.control import Control, Ending
from labs.core.failures import Diverged, explain_failure
from labs.playground_stacked import Stack, _stacked_forward, losses_and_grads, stacking_key, train_together
from labs.stacked import add_penalty_grads

CPU = torch.device("cpu")


def results(snapshots) -> dict[int, tuple[dict, float]]:
    """Each member's final weights and last measured training loss."""
    weights, losses = {}, {}
    for i, snap in snapshots:
        if snap.final:
            weights[i] = snap.state_dict
        else:
            losses[i] = snap.metrics["train_loss"]
    return {i: (weights[i], losses[i]) for i in weights}


def alone(cfg) -> tuple[dict, float]:
    """The run alone, as a stack of one (what a lone learner's run will be once the runner
    stacks runs)."""
    snaps = [s for _, s in train_together([cfg], CPU)]
    return snaps[-1].state_dict, snaps[-2].metrics["train_loss"]


def assert_same_run(mine: tuple[dict, float], theirs: tuple[dict, float]) -> None:
    assert mine[1] == pytest.approx(theirs[1], rel=1e-5)  # the measure: the final loss
    for name, weight in mine[0].items():
        torch.testing.assert_close(weight, theirs[0][name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "momentum", "sgd"])
def test_members_train_as_their_runs_alone(optimizer):
    """Different seeds, learning rates, datasets and penalties in one stack: each member ends
    where its solo run ends (a member reading another's data or rate would be far off)."""
    cfgs = [
        playground.Config(
            seed=s, learning_rate=lr, dataset=d, regularization=r, optimizer=optimizer, epochs=12
        )
        for s, lr, d, r in [(0, 0.02, "spiral", "none"), (1, 0.05, "moons", "L2"), (7, 0.01, "xor", "L1")]
    ]
    together = results(train_together(cfgs, CPU))
    for i, cfg in enumerate(cfgs):
        assert_same_run(together[i], alone(cfg))
    assert not torch.equal(together[0][0]["out.weight"], together[1][0]["out.weight"])


def test_a_chaotic_default_run_ends_as_it_does_alone():
    """The run where float32 stacking drifted 5% from the solo run by the end (seed 3, rate
    0.03, the default 150 epochs), beside three other learners' runs."""
    me = playground.Config(seed=3, learning_rate=0.03)
    others = [playground.Config(seed=s, learning_rate=lr) for s, lr in [(0, 0.02), (1, 0.05), (2, 0.01)]]
    assert_same_run(results(train_together([*others, me], CPU))[3], alone(me))


def test_a_lone_stacked_run_shows_what_the_module_run_shows():
    """A stack of one is today's run: snapshots with the same fields and layers, learning as
    much (float64 against float32: the curves agree closely, not to the bit)."""
    cfg = playground.Config(epochs=20, seed=2)
    mine = [s for _, s in train_together([cfg], CPU)]
    module = list(playground.train(cfg, CPU))
    assert len(mine) > 3 and len(module) > 3 and mine[-1].final and module[-1].final
    for a in mine[:-1]:
        assert a.metrics.keys() == module[0].metrics.keys() and a.view.keys() == module[0].view.keys()
        assert a.layers.keys() == module[0].layers.keys()
        assert all(a.layers[k]["grad_norm"] > 0 for k in a.layers)  # the snapshot sees gradients
    assert mine[-2].step == module[-2].step == mine[-1].step
    assert mine[-2].metrics["train_loss"] == pytest.approx(module[-2].metrics["train_loss"], rel=1e-3)
    assert {k: v.dtype for k, v in mine[-1].state_dict.items()} == {
        k: v.dtype for k, v in module[-1].state_dict.items()
    }


@pytest.mark.parametrize("kind", ["adam", "momentum", "sgd"])
def test_the_stacked_optimizer_is_torchs_for_each_member(kind):
    """Two members with their own learning rates, stepped on the same gradients as torch.optim
    steps each alone."""
    torch.manual_seed(0)
    start = torch.randn(2, 5, 3, dtype=stacked.DTYPE)
    grads = [torch.randn(2, 5, 3, dtype=stacked.DTYPE) for _ in range(6)]
    rates = [0.01, 0.2]
    opt = stacked.StackedOptimizer({"w": start.clone()}, kind, rates)
    for g in grads:
        opt.step({"w": g})
    for i, lr in enumerate(rates):
        param = start[i].clone().requires_grad_(True)
        if kind == "adam":
            reference = torch.optim.Adam([param], lr=lr)
        else:
            reference = torch.optim.SGD([param], lr=lr, momentum=stacked.MOMENTUM[kind])
        for g in grads:
            param.grad = g[i].clone()
            reference.step()
        torch.testing.assert_close(opt.params["w"][i], param.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", sorted(playground.ACTIVATIONS))
def test_the_written_out_backward_pass_is_autograds(activation):
    """The stack's hand-written gradients (labs/playground_stacked.py losses_and_grads, with
    each member's L1 or L2 penalty) against autograd's through the same stacked forward, for
    members with a short last batch (padding weighs nothing) and every activation."""
    torch.manual_seed(0)
    cfg = playground.Config(activation=activation, hidden_layers=3, units=5)
    shapes = {"blocks.0.linear": (5, 2), "blocks.1.linear": (5, 5), "blocks.2.linear": (5, 5), "out": (1, 5)}
    params = {}
    for name, (rows, cols) in shapes.items():
        params[f"{name}.weight"] = torch.randn(3, rows, cols, dtype=stacked.DTYPE, requires_grad=True)
        params[f"{name}.bias"] = torch.randn(3, rows, dtype=stacked.DTYPE, requires_grad=True)
    x, targets = torch.randn(3, 8, 2, dtype=stacked.DTYPE), torch.randint(0, 2, (3, 8)).to(stacked.DTYPE)
    real = torch.ones(3, 8, dtype=stacked.DTYPE)
    real[1, 5:] = 0  # member 1's batch is an epoch's short last one
    l1, l2 = [0.0, 0.01, 0.0], [0.0, 0.0, 0.1]
    losses, grads = losses_and_grads(params, x, targets, real / real.sum(1, keepdim=True), cfg)
    add_penalty_grads(grads, params, [n for n in grads if n.endswith("weight")], l1, l2)

    logits = _stacked_forward(params, x, cfg).squeeze(-1)
    each = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    expected = (each * real).sum(1) / real.sum(1)
    penalty = sum(
        torch.as_tensor(rates, dtype=stacked.DTYPE) * params[n].abs().pow(power).flatten(1).sum(1)
        for n in grads if n.endswith("weight") for rates, power in ((l1, 1), (l2, 2))
    ).sum()  # fmt: skip
    autograd = torch.autograd.grad(expected.sum() + penalty, list(params.values()))
    torch.testing.assert_close(losses, expected.detach(), rtol=1e-12, atol=1e-14)
    for name, theirs in zip(params, autograd):
        torch.testing.assert_close(grads[name], theirs, rtol=1e-10, atol=1e-13, msg=name)


# -- joining and leaving -------------------------------------------------------------------------


def drive(stack: Stack, made: dict, until=lambda: False) -> None:
    """Step the stack until it is empty or `until()`; each member's snapshots into `made`."""
    while stack.members and not until():
        for key, item in stack.step():
            made.setdefault(key, []).append(item)


def final_of(items) -> tuple[dict, float]:
    snaps = [s for s in items if not isinstance(s, Exception)]
    return snaps[-1].state_dict, [s for s in snaps if not s.final][-1].metrics["train_loss"]


def short(seed: int, **knobs) -> playground.Config:
    return playground.Config(seed=seed, epochs=10, **knobs)


def test_a_run_that_joins_mid_way_trains_as_alone_and_restarts_nobody():
    stack, made = Stack(CPU), {}
    a, b = short(0), short(1, learning_rate=0.05)
    stack.add("a", a)
    drive(stack, made, until=lambda: stack.members[0].done >= 40)
    stack.add("b", b)  # joins at A's step 40
    assert [m.done for m in stack.members] == [40, 0]
    drive(stack, made)
    assert_same_run(final_of(made["a"]), alone(a))
    assert_same_run(final_of(made["b"]), alone(b))


def test_stop_of_one_member_ends_only_its_run_and_keeps_its_weights():
    stack, made = Stack(CPU), {}
    controls = {k: Control() for k in "abc"}
    cfgs = {"a": short(0), "b": short(1), "c": short(2)}
    for key, cfg in cfgs.items():
        stack.add(key, cfg, controls[key])
    drive(stack, made, until=lambda: stack.members[0].done >= 30)
    controls["b"].stop.set()  # B's learner presses Stop
    drive(stack, made)
    final_b = made["b"][-1]
    assert final_b.final and final_b.step == 30 and final_b.state_dict is not None
    assert controls["b"].ending == Ending.STOP and controls["a"].ending is None
    for key in "ac":  # the others' runs are unchanged by B leaving
        assert_same_run(final_of(made[key]), alone(cfgs[key]))
    assert controls["a"].progress[:] == [made["a"][-1].step] * 2  # their progress is their own


def test_a_diverging_member_leaves_with_the_usual_words_while_the_rest_finish():
    stack, made = Stack(CPU), {}
    cfgs = {"a": short(0), "b": short(1), "c": short(2)}
    for key, cfg in cfgs.items():
        stack.add(key, cfg)
    stack.inputs[1] = float("nan")  # B's run blows up (no playground knob makes a NaN loss)
    drive(stack, made)
    failed = made["b"][-1]
    assert isinstance(failed, Diverged)
    words = explain_failure(failed)
    assert words.startswith("Training diverged") and "smaller learning rate" in words
    for key in "ac":
        assert_same_run(final_of(made[key]), alone(cfgs[key]))


def test_only_runs_of_one_shape_share_a_stack():
    assert stacking_key(playground.Config(seed=1, learning_rate=0.3)) == stacking_key(playground.Config())
    assert stacking_key(playground.Config(units=4)) != stacking_key(playground.Config())
    assert stacking_key(playground.Config(dropout=0.1)) is None  # trains alone, as an nn.Module
    stack = Stack(CPU)
    stack.add("a", playground.Config())
    with pytest.raises(ValueError, match="another shape"):
        stack.add("b", playground.Config(units=4))
    with pytest.raises(ValueError, match="trains alone"):
        Stack(CPU).add("c", playground.Config(dropout=0.1))


def test_members_measured_in_one_pass_read_as_their_nets_measured_alone():
    """A batch's snapshot pass (all due members at once) gives each member the numbers,
    layer statistics, boundary and unit maps its own nn.Module gives at the same weights."""

    from labs.core.hooks import record_activations
    from labs.playground_stacked import _load_member, snapshots_together

    stack = Stack(CPU)
    cfgs = [short(0), short(1, dataset="moons", learning_rate=0.05), short(7, dataset="xor")]
    for i, cfg in enumerate(cfgs):
        stack.add(i, cfg)
    for _ in range(30):
        _, grads = stack._train_step()
    params = {name: p.detach() for name, p in stack.params.items()}
    together = snapshots_together(stack.members, params, grads, stack._total)
    for row, (m, snap) in enumerate(zip(stack.members, together)):
        _load_member(m.run.model, stack.params, grads, row)
        with record_activations(m.probe.acts) as latest:
            own = playground._snapshot(m.run.model, replace(m.probe, latest=latest), m.cfg, 0, 1)
        assert snap.metrics == pytest.approx(own.metrics, rel=1e-5, abs=1e-6)
        assert snap.layers.keys() == own.layers.keys()
        for name, stats in own.layers.items():
            numbers = {k: v for k, v in stats.items() if k not in ("hist", "hist_range")}
            assert {k: snap.layers[name][k] for k in numbers} == pytest.approx(numbers, rel=1e-4, abs=1e-6)
            assert abs(snap.layers[name]["hist"] - stats["hist"]).sum() < 0.01  # a point on a bin edge
        boundary = torch.from_numpy(snap.view["boundary"])
        torch.testing.assert_close(boundary, torch.from_numpy(own.view["boundary"]))
        for mine, theirs in zip(snap.view["neurons"], own.view["neurons"], strict=True):
            torch.testing.assert_close(torch.from_numpy(mine), torch.from_numpy(theirs), rtol=1e-4, atol=1e-4)


def test_members_at_other_steps_are_measured_in_shared_passes(monkeypatch):
    """Runs that joined at different steps come due at different steps; a member half way to
    its next snapshot is measured along with a due one, so passes are fewer than snapshots."""
    from labs import playground_stacked

    passes = []
    real = playground_stacked.snapshots_together

    def counted(members, *args):
        passes.append(len(members))
        return real(members, *args)

    monkeypatch.setattr(playground_stacked, "snapshots_together", counted)
    # the cadence's clock ticks 1 ms each time it is read, so when snapshots come due does
    # not depend on how fast this machine steps
    ticks = itertools.count()
    monkeypatch.setattr(snapshot, "clock", lambda: lambda: next(ticks) / 1000)
    stack, made = Stack(CPU), {}
    stack.SNAP_SHARE = 0  # members wait MIN_SNAP_SECONDS, not what measuring costs here
    for key in range(6):
        stack.add(key, short(key))
        drive(stack, made, until=lambda joined=7 * (key + 1): stack.members[0].done >= joined)
    drive(stack, made)
    snapshots = sum(1 for items in made.values() for s in items if not s.final)
    assert len(passes) < snapshots / 2 and max(passes) == 6
    for key in range(6):  # and each run is still its run alone
        assert_same_run(final_of(made[key]), alone(short(key)))
