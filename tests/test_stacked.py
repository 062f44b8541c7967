"""Same-shaped runs trained as one stack (labs/stacked.py, labs/playground_stacked.py):
each member trains as its run alone, whatever else the stack holds."""

from dataclasses import replace

import pytest
import torch

from labs import playground, stacked
from labs.core.control import Control, Ending
from labs.core.failures import Diverged, explain_failure
from labs.playground_stacked import Stack, stacking_key, train_together

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
    stack = {"w": start.clone()}
    opt = stacked.StackedOptimizer(stack, kind, rates)
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
        torch.testing.assert_close(stack["w"][i], param.detach(), rtol=1e-12, atol=1e-14)


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
    stack, made = Stack(CPU), {}
    for key in range(6):
        stack.add(key, short(key))
        drive(stack, made, until=lambda joined=7 * (key + 1): stack.members[0].done >= joined)
    drive(stack, made)
    snapshots = sum(1 for items in made.values() for s in items if not s.final)
    assert len(passes) < snapshots / 2 and max(passes) == 6
    for key in range(6):  # and each run is still its run alone
        assert_same_run(final_of(made[key]), alone(short(key)))


# -- chapter 4's deep MLP, stacked (labs/mlp_stacked.py) ---------------------------------------


def deep(seed: int, **knobs):
    from labs import initialization

    return initialization.Config(seed=seed, **{"steps": 60, "depth": 6, **knobs})


def deep_stack():
    from labs import initialization
    from labs.mlp_stacked import Stack as DeepStack

    return DeepStack(CPU, initialization.recipe)


def deep_alone(cfg) -> tuple[dict, float]:
    made: dict = {}
    stack = deep_stack()
    stack.add(0, cfg)
    drive(stack, made)
    return final_of(made[0])


def test_deep_members_with_their_own_seeds_inits_and_rates_train_as_alone():
    """Chapter 4's members differ in seed (data split, start, shuffling), initialization and
    learning rate; one joins mid-way. Each ends where its run alone ends."""
    cfgs = {
        "a": deep(0, init="kaiming", activation="relu", learning_rate=0.02),
        "b": deep(1, init="xavier", activation="relu", learning_rate=0.05),
        "c": deep(0, init="default", activation="relu"),
    }
    stack, made = deep_stack(), {}
    stack.add("a", cfgs["a"])
    stack.add("b", cfgs["b"])
    drive(stack, made, until=lambda: stack.members[0].done >= 25)
    stack.add("c", cfgs["c"])
    assert len(stack.sets) == 2  # members of one seed share its digits
    drive(stack, made)
    for key, cfg in cfgs.items():
        assert_same_run(final_of(made[key]), deep_alone(cfg))
    assert final_of(made["a"])[1] < 2.0  # Kaiming ReLU learns in 60 steps (chance: 2.30)


def test_a_lone_deep_stack_shows_what_the_module_run_shows():
    """The stack of one against labs/core/mlp.py train_digits: same snapshots, same fields,
    the same numbers up to float64 against float32."""
    from labs import initialization

    cfg = deep(3, init="xavier", activation="tanh", learning_rate=0.05)
    stack, made = deep_stack(), {}
    stack.add(0, cfg)
    drive(stack, made)
    mine, module = made[0], list(initialization.train(cfg, CPU))
    assert mine[-1].final and mine[-1].step == module[-1].step == 60
    for a, b in [(mine[0], module[0]), (mine[-2], module[-2])]:  # steps 1 and 60: the rest by time
        assert a.step == b.step
        assert a.metrics == pytest.approx(b.metrics, rel=1e-3)
        assert a.view["distinct_units"] == b.view["distinct_units"]
        assert a.layers.keys() == b.layers.keys()
        for name, stats in b.layers.items():
            numbers = {k: v for k, v in stats.items() if k not in ("hist", "hist_range")}
            assert {k: a.layers[name][k] for k in numbers} == pytest.approx(numbers, rel=1e-3, abs=1e-5)
    for name, weight in module[-1].state_dict.items():
        torch.testing.assert_close(mine[-1].state_dict[name], weight, rtol=1e-3, atol=1e-5)


def test_an_exploding_deep_member_leaves_as_its_run_alone_does_while_the_rest_finish():
    """ReLU with N(0, 1) weights explodes (the chapter's preset): alone, its run ends with
    Diverged; in a stack it leaves in the same words, and the others finish as alone."""
    from labs import initialization

    exploding = deep(0, init="normal1", activation="relu", depth=20, learning_rate=0.1)
    with pytest.raises(Diverged) as alone_err:
        list(initialization.train(exploding, CPU))
    stack, made = deep_stack(), {}
    healthy = deep(1, init="kaiming", activation="relu", depth=20, learning_rate=0.02)
    stack.add("x", exploding)
    stack.add("h", healthy)
    drive(stack, made)
    # found at a snapshot's check, as alone: the step it names depends on when that comes
    said, alone_said = str(made["x"][-1]), str(alone_err.value)
    assert (
        isinstance(made["x"][-1], Diverged) and said.split(" by step")[0] == alone_said.split(" by step")[0]
    )
    assert explain_failure(made["x"][-1]).startswith("Training diverged")
    assert made["h"][-1].final
    assert_same_run(final_of(made["h"]), deep_alone(healthy))


# -- chapter 5: variants side by side, each a stack (labs/stacked.py SideBySide) --------------


def side_by_side_of(cfgs: dict, joins_at: int = 0) -> dict:
    """Runs of chapter 5 in one stack (the others joining once the first is `joins_at` steps in)."""
    from labs import normalization

    stack, made = normalization.EXPERIMENT.stack(CPU), {}
    first, *later = cfgs
    stack.add(first, cfgs[first])
    first_variant = next(iter(stack.stacks.values()))
    drive(stack, made, until=lambda: first_variant.members[0].done >= joins_at)
    for key in later:
        stack.add(key, cfgs[key])
    drive(stack, made)
    return made


def variant_results(made: list) -> dict[str, tuple[dict, float]]:
    """Each variant's final weights and last logged training loss, from a run's snapshots."""
    final = made[-1]
    assert final.final
    losses = {}
    for snap in made[:-1]:
        for name, value in snap.metrics.items():
            if name.endswith("train_loss"):
                losses[name.split(":")[0]] = value
    return {name: (state, losses[name]) for name, state in final.state_dict.items()}


def test_side_by_side_runs_train_as_alone_variant_by_variant():
    """Chapter 5's runs, stacked: plain, BatchNorm (each member by its own batch, with its own
    running statistics) and residual, for two learners with their own seeds and rates, one
    joining mid-way; every variant of each ends where its run alone ends."""
    from labs import normalization

    knobs = {"variants": ("plain", "batchnorm", "residual"), "depth": 4, "steps": 50}
    cfgs = {
        "a": normalization.Config(seed=0, learning_rate=0.05, **knobs),
        "b": normalization.Config(seed=1, learning_rate=0.02, **knobs),
    }
    made = side_by_side_of(cfgs, joins_at=20)
    for key, cfg in cfgs.items():
        together, alone_ = variant_results(made[key]), variant_results(side_by_side_of({key: cfg})[key])
        assert together.keys() == alone_.keys() == {"plain", "BatchNorm", "residual"}
        for name in together:
            assert_same_run(together[name], alone_[name])
        assert "BatchNorm.blocks.1.norm.running_var" not in together["BatchNorm"][0]  # its own names
        assert together["BatchNorm"][0]["blocks.1.norm.num_batches_tracked"] == 50


def test_a_lone_side_by_side_stack_shows_what_side_by_side_shows():
    """Against labs/core/compare.py's side_by_side of module runs: the same variants, metric
    names, statuses and weights (float64 against float32), BatchNorm's running statistics too."""
    from labs import normalization

    cfg = normalization.Config(variants=("plain", "batchnorm"), depth=3, steps=40, learning_rate=0.05)
    mine = side_by_side_of({0: cfg})[0]
    module = list(normalization.train(cfg, CPU))
    assert {k for s in mine for k in s.metrics} == {k for s in module for k in s.metrics}
    assert {k for s in mine for k in s.layers} == {k for s in module for k in s.layers}
    statuses = {name: v["status"] for name, v in mine[-1].view["variants"].items()}
    assert (
        statuses
        == {name: v["status"] for name, v in module[-1].view["variants"].items()}
        == {
            "plain": "done",
            "BatchNorm": "done",
        }
    )
    for name, state in module[-1].state_dict.items():
        for weight, value in state.items():
            torch.testing.assert_close(mine[-1].state_dict[name][weight], value, rtol=1e-3, atol=1e-4)


def test_a_diverging_variant_drops_out_with_a_note_while_the_others_train_on():
    """The chapter's question: two layers at a learning rate of 1. Alone and stacked, the plain
    net diverges and BatchNorm trains on to the end; the stacked run says so as side_by_side."""
    from labs import normalization

    cfg = normalization.Config(variants=("plain", "batchnorm"), depth=2, learning_rate=1.0, steps=100)
    mine = side_by_side_of({0: cfg, 1: replace(cfg, seed=1)})[0]
    variants = mine[-1].view["variants"]
    assert variants["plain"]["status"].startswith("diverged: the loss")
    assert variants["BatchNorm"]["status"] == "done" and variants["BatchNorm"]["step"] == 100
    assert any(n.startswith("plain diverged") for s in mine for n in s.notes)
    assert set(mine[-1].state_dict) == {"BatchNorm"}


# -- chapter 3's race on a real net, stacked (labs/optimizers_stacked.py) ---------------------


def race(seed: int, **knobs):
    from labs import optimizers

    return optimizers.Config(seed=seed, **{"steps": 100, **knobs})


def race_alone(cfg) -> dict:
    from labs.optimizers_stacked import Stack as RaceStack

    stack, made = RaceStack(CPU), {}
    stack.add(0, cfg)
    drive(stack, made)
    return made[0]


def assert_same_race(mine: list, theirs: list) -> None:
    """The same racers' weights at the end, and the same test accuracies along the way where
    both measured (snapshots come by time: the steps they fall on differ)."""
    assert mine[-1].final and mine[-1].step == theirs[-1].step
    for name, weights in theirs[-1].state_dict.items():
        for key, value in weights.items():
            torch.testing.assert_close(mine[-1].state_dict[name][key], value, rtol=1e-5, atol=1e-6)
    at = {s.step: s.metrics for s in theirs[:-1]}
    shared = [s for s in mine[:-1] if s.step in at]
    assert shared  # step 1 at least
    for snap in shared:
        accuracies = {k: v for k, v in snap.metrics.items() if k.endswith("acc") or k == "lr"}
        assert accuracies == pytest.approx({k: at[snap.step][k] for k in accuracies}, rel=1e-6)


def test_races_with_their_own_rates_schedules_and_seeds_end_as_alone():
    """Three learners' races in one stack: their own seeds (data split, start, batches),
    learning rates, schedules (one-cycle cycles momentum and Adam's beta1 too) and AdamW decay,
    one joining mid-way; every racer of each race ends where its race alone ends."""
    racers = ("sgd", "nesterov", "rmsprop", "adamw")
    cfgs = {
        "a": race(0, optimizers=racers, learning_rate=0.02),
        "b": race(1, optimizers=racers, learning_rate=0.05, schedule="one_cycle", weight_decay=0.1),
        "c": race(2, optimizers=racers, learning_rate=0.003, schedule="cosine"),
    }
    from labs.optimizers_stacked import Stack as RaceStack

    stack, made = RaceStack(CPU), {}
    stack.add("a", cfgs["a"])
    stack.add("b", cfgs["b"])
    drive(stack, made, until=lambda: stack.members[0].done >= 40)
    stack.add("c", cfgs["c"])
    drive(stack, made)
    for key, cfg in cfgs.items():
        assert_same_race(made[key], race_alone(cfg))
    accuracy = made["a"][-2].metrics["adamw test acc"]
    assert accuracy > 0.8  # the race learns (chance: 0.1)


def test_a_lone_stacked_race_shows_what_the_module_race_shows():
    from labs import optimizers

    cfg = race(3, schedule="step")
    mine, module = race_alone(cfg), list(optimizers.train(cfg, CPU))
    assert mine[0].metrics.keys() == module[0].metrics.keys()
    assert mine[0].view.keys() == module[0].view.keys() == {"planned_lr"}
    assert mine[0].metrics == pytest.approx(module[0].metrics, rel=1e-5)  # step 1
    for name, weights in module[-1].state_dict.items():
        for key, value in weights.items():
            # float64 against float32 over 100 steps of Adam: close, not to the bit
            torch.testing.assert_close(mine[-1].state_dict[name][key], value, rtol=1e-2, atol=1e-3)


def test_stop_of_one_race_ends_only_it():
    from labs.optimizers_stacked import Stack as RaceStack

    stack, made = RaceStack(CPU), {}
    controls = {k: Control() for k in "ab"}
    cfgs = {"a": race(0), "b": race(1, learning_rate=0.03)}
    for key, cfg in cfgs.items():
        stack.add(key, cfg, controls[key])
    drive(stack, made, until=lambda: stack.members[0].done >= 30)
    controls["a"].stop.set()
    drive(stack, made)
    assert made["a"][-1].final and made["a"][-1].step == 30 and controls["a"].ending == Ending.STOP
    assert_same_race(made["b"], race_alone(cfgs["b"]))
