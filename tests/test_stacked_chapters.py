"""The other chapters' stacks (labs/mlp_stacked.py for chapters 4 and 5, labs/stack_members.py
SideBySide, labs/optimizers_stacked.py for chapter 3's race): each member trains as its run
alone, whatever else the stack holds."""

from dataclasses import replace

import pytest
import torch

from labs.core.control import Control, Ending
from labs.core.failures import Diverged, explain_failure
from tests.test_stacked import CPU, assert_same_run, drive, final_of

# -- chapter 4's deep MLP, stacked (labs/mlp_stacked.py) ---------------------------------------


def deep(seed: int, **knobs):
    from labs import initialization

    return initialization.Config(seed=seed, **{"steps": 60, "depth": 6, "speed": "full", **knobs})


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
