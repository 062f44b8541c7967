"""Same-shaped runs trained as one stack (labs/core/stacked.py, labs/playground_stacked.py):
each member trains as its run alone, whatever else the stack holds."""

import pytest
import torch

from labs import playground
from labs.core import stacked
from labs.playground_stacked import train_together

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
    snaps = list(playground.train(cfg, CPU))
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
    mine, module = list(playground.train(cfg, CPU)), list(playground.train_module(cfg, CPU))
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
