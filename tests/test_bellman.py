"""Chapter 17, the Bellman backups: value and policy iteration reach the optimal policy, values
spread a cell a sweep, γ is a horizon (a short one settles for the near small exit, for the
planner and for the Q-learner alike, over seeds), and policy iteration needs a few improvements
where value iteration needs many sweeps."""

import dataclasses

import numpy as np
import pytest

from figures.views import reinforcement as views
from labs import bellman, gridworld, qlearning
from tests.runs import run_view


def planned(**knobs):
    return run_view(bellman.train, bellman.BellmanConfig(sweep_ms=0, **knobs))


def exit_of(view) -> str:
    return view.view["exit"]


@pytest.mark.lesson
@pytest.mark.parametrize("method", bellman.METHODS)
def test_a_short_horizon_settles_for_the_near_small_exit(method, lesson):
    # S is worth 0.28 by the near exit at γ = 0.6 (the goal would give it −0.02·(1+…) + 0.6⁵ ≈ 0.03),
    # 0.51 by the goal at γ = 0.9: the choice turns near γ = 0.85, far from both
    short, long = planned(method=method, gamma=0.6), planned(method=method, gamma=0.9)
    lesson.expect(f"{method}, γ = 0.6: the exit S heads for", exit_of(short), "==", "g")
    lesson.expect(f"{method}, γ = 0.9: the exit S heads for", exit_of(long), "==", "G")
    assert short.last("optimal policy share") == long.last("optimal policy share") == 1.0


@pytest.mark.lesson
@pytest.mark.parametrize("gamma, expected", [(0.6, "g"), (0.95, "G")])
def test_the_q_learner_finds_the_same_exit_as_the_planner(seed, gamma, expected, lesson):
    cfg = qlearning.GridConfig(world="two exits", gamma=gamma, seed=seed)
    view = run_view(qlearning.train_grid, cfg)
    rows, end = view.view["rows"], view.view["path"][-1]
    # measured over seeds 0-5 (3,000 episodes): the planner's exit every time; share of optimal
    # cells 100% at γ = 0.6, 87-100% at γ = 0.95 (far from the goal, some ties stay unsettled)
    width = len(rows[0])
    lesson.expect(
        f"Q-learning at γ = {gamma}: where its greedy way ends",
        rows[end // width][end % width],
        "==",
        expected,
    )


def test_values_spread_from_the_exits_a_cell_a_sweep():
    view = planned(gamma=0.9)
    sweeps, ends = view.series(bellman.HEADS_FOR)
    by_sweep = dict(zip(sweeps, ends))
    # the small exit is 2 steps from S, the goal 6: S sees each after as many sweeps
    assert by_sweep[1] == 0.0 and by_sweep[2] == by_sweep[5] == bellman.EXIT_CODE["g"]
    assert all(by_sweep[k] == bellman.EXIT_CODE["G"] for k in sweeps if k >= 6)


@pytest.mark.lesson
def test_policy_iteration_needs_few_improvements_where_value_iteration_needs_many_sweeps(lesson):
    # the slippery bridge at γ = 0.9: 3 improvements against 35 sweeps (no randomness here)
    value = planned(world="bridge", slip=0.2, gamma=0.9)
    policy = planned(world="bridge", slip=0.2, gamma=0.9, method="policy iteration")
    lesson.expect("policy iteration: improvements of the whole policy", policy.last("improvements"), "<=", 6)
    lesson.expect("value iteration: sweeps to converge", value.history[-1]["step"], ">=", 20)
    assert np.array_equal(
        value.state_dict["q_table"].numpy().argmax(1)[_open("bridge")],
        policy.state_dict["q_table"].numpy().argmax(1)[_open("bridge")],
    )


def _open(world: str) -> list[int]:
    return gridworld.Grid(gridworld.MAPS[world], 0.0).open_states


@pytest.mark.lesson
@pytest.mark.parametrize("index, expected", [(0, "the small exit, near"), (1, "yes, for a few sweeps")])
def test_the_bellman_questions_are_settled_as_the_chapter_teaches(index, expected, lesson):
    question = bellman.QUESTIONS[index]
    view = run_view(bellman.train, dataclasses.replace(bellman.BellmanConfig(), **question.settings))
    answer, evidence = question.outcome(view)
    lesson.expect(f"question: {question.prompt[:50]}…", answer, "==", expected, evidence)


def test_the_views_draw_every_sweep_and_name_the_horizon():
    view = planned(gamma=0.9, method="policy iteration")
    parts = views.draw_bellman(view)
    assert {"world", "change", "share"} <= parts.keys()
    numbers = dict(parts[views.NUMBERS])
    assert numbers["horizon 1/(1 − γ)"] == "10.0 steps" and numbers["optimal policy share"] == "100%"
    changes = parts["change"]["data"][0]["y"]
    assert len(changes) > 10 and min(changes) < bellman.TOL
    assert bellman.horizon(0.6) == pytest.approx(2.5)


def test_stop_ends_the_sweeps_and_keeps_the_values():
    import torch

    from labs.core.driver import IN_THREAD
    from labs.core.runner import RunState, TrainingRun

    run = TrainingRun(
        bellman.train,
        bellman.BellmanConfig(gamma=0.99, sweep_ms=200, world="detour"),
        torch.device("cpu"),
        executor=IN_THREAD,
    ).start()
    assert run.wait_for_first_snapshot(30)
    run.stop()
    assert run.wait(30)
    view = run.view()
    assert view.state == RunState.STOPPED and view.state_dict["q_table"].shape[1] == 4
