"""Chapter 17: the Bellman backup made visible. With the grid world's dynamics known, the
optimal values follow from backups alone, no agent and no episodes:

    value iteration    V(s) ← max_a Σ p(s'|s,a) [r + γ V(s')]        every cell, every sweep
    policy iteration   evaluate π by sweeps of  V(s) ← Σ p(s'|s,π(s)) [r + γ V(s')],
                       then π(s) ← argmax_a Σ p(s'|s,a) [r + γ V(s')]; until π stops changing

A snapshot after every sweep shows the values spreading out from the exits a cell a sweep, and
measures how much of the optimal policy the current arrows already are. γ sets the horizon:
a reward k steps away is worth γᵏ of itself, so the agent looks about 1/(1 − γ) steps ahead
(the "two exits" world puts a small exit near the start and the goal far away).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from labs import gridworld as gw
from labs.core import budget
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import steps
from labs.core.questions import Question
from labs.core.snapshot import Snapshot
from labs.qlearning import MAPS

MAX_SWEEPS = 2000  # value iteration at γ = 0.99 to TOL takes ~1,400
TOL = 1e-6  # sweeps end when no value moves by more than this
VISIBLE = 0.01  # a change the colours show: sweeps pause for the learner only while values move this much
METHODS = ("value iteration", "policy iteration")
EXIT_CODE = {"G": 1.0, "g": 0.5, "P": -1.0}  # where the greedy way from S ends, as a number
HEADS_FOR = "greedy way from S ends at (1 goal, ½ small exit, −1 pit, 0 nowhere)"


@dataclass(frozen=True)
class BellmanConfig:
    world: str = knob("two exits", "World", "", choices=tuple(MAPS), labels=MAPS)
    method: str = knob(
        "value iteration",
        "Method",
        "Value iteration backs up the best action everywhere, every sweep; policy iteration "
        "evaluates one fixed policy to the end, then improves it all at once.",
        choices=METHODS,
    )
    gamma: float = knob(
        0.9,
        "γ (discount)",
        "A reward k steps away is worth γᵏ of itself: the agent looks about 1/(1 − γ) steps ahead.",
        lo=0.3,
        hi=0.99,
        step=0.01,
    )
    slip: float = knob(0.0, "Slip", "Chance that a move goes sideways instead.", lo=0.0, hi=0.6, step=0.05)
    sweep_ms: int = knob(
        150,
        "Watch: ms per sweep",
        "A pause after each sweep while the values still visibly move, to watch them spread; 0 = "
        "as fast as possible.",
        lo=0,
        hi=1000,
        step=10,
    )


def horizon(gamma: float) -> float:
    """How many steps ahead a discount γ looks: 1 + γ + γ² + … = 1/(1 − γ)."""
    return 1.0 / (1.0 - gamma)


def sweeps_to_see(gamma: float) -> int:
    """Sweeps until no value moves by VISIBLE: the error shrinks by γ a sweep."""
    return int(np.ceil(np.log(VISIBLE) / np.log(gamma)))


def cost(cfg: BellmanConfig) -> budget.Cost:
    """A sweep is ~4 backups of each of ~50 cells (~2 ms of Python). On a dry floor value
    iteration is exact once the values have crossed the grid (rows + columns sweeps); with
    slips its error shrinks by γ a sweep. Policy iteration's evaluations shrink by γ too, about
    twice over (measured on the three worlds). Watching pauses only while values move visibly;
    `wait` is per sweep, as the budget counts it."""
    rows, cols = len(gw.MAPS[cfg.world]), len(gw.MAPS[cfg.world][0])
    geometric = int(np.ceil(np.log(TOL) / np.log(cfg.gamma)))
    if cfg.method == METHODS[0]:
        sweeps = geometric if cfg.slip else min(geometric, rows + cols)
    else:
        sweeps = 2 * geometric
    sweeps = min(MAX_SWEEPS, sweeps)
    pauses = min(sweeps, sweeps_to_see(cfg.gamma), 2 * (rows + cols)) * cfg.sweep_ms / 1000
    return budget.Cost(4 * 64, 0, sweeps, 0, 300, optimizer_states=0, wait=pauses / sweeps)


def train(cfg: BellmanConfig, device=None):
    """Sweep until the values stop moving (value iteration) or the policy stops changing
    (policy iteration); a snapshot after every sweep, the last one carrying V and Q."""
    check(cfg)
    grid = gw.Grid(gw.MAPS[cfg.world], cfg.slip)
    q_star = gw.value_iteration(grid, cfg.gamma)
    sweeps = value_sweeps(grid, cfg.gamma) if cfg.method == METHODS[0] else policy_sweeps(grid, cfg.gamma)
    view = {"rows": list(grid.rows), "gamma": cfg.gamma, "method": cfg.method}
    notes = [
        f"γ = {cfg.gamma:g}: a reward 10 steps away is worth {cfg.gamma**10:.0%} of itself now; the "
        f"agent looks about {horizon(cfg.gamma):.0f} steps ahead."
    ]
    sweep, q, improvements = 0, np.zeros((grid.n_states, 4)), 0
    for sweep, (q, change, improved) in zip(steps(MAX_SWEEPS), sweeps):
        improvements += bool(improved) and cfg.method == METHODS[1]
        metrics = {
            "max change": change,
            "value of S": float(q[grid.start].max()),
            "optimal policy share": gw.agreement(grid, q, q_star),
            "arrows changed": float(improved),
            "improvements": float(improvements),
        }
        path = gw.greedy_path(grid, q)
        metrics[HEADS_FOR] = EXIT_CODE.get(grid.cell(path[-1]), 0.0)
        shown = {**view, "q": q, "path": path, "sweep": sweep}
        yield Snapshot(sweep, MAX_SWEEPS, metrics, view=shown, notes=notes)
        view, notes = {}, []
        if cfg.sweep_ms and change >= VISIBLE:
            time.sleep(cfg.sweep_ms / 1000)
    exit_cell = grid.cell(gw.greedy_path(grid, q)[-1])
    yield Snapshot(sweep, MAX_SWEEPS, view={"exit": exit_cell, "q": q})
    values = torch.from_numpy(q.copy())  # a row per cell (row-major), a column per action
    yield Snapshot(sweep, sweep, final=True, state_dict={"q_table": values})


def value_sweeps(grid: gw.Grid, gamma: float):
    """Value iteration: yields (Q, largest change of a value, cells whose greedy action changed)
    after each sweep, until no value moves by TOL."""
    q = np.zeros((grid.n_states, 4))
    while True:
        new = gw.backup(grid, q.max(1), gamma)
        change = float(np.abs(new.max(1) - q.max(1)).max())
        improved = _changed(grid, q, new)
        q = new
        yield q, change, improved
        if change < TOL:
            return


def policy_sweeps(grid: gw.Grid, gamma: float):
    """Policy iteration from "always up": sweeps of evaluation of the fixed policy (its arrows
    shown, its values spreading), then one improvement; ends when an improvement changes no
    cell. Yields what value_sweeps yields; "changed" is nonzero at improvements only."""
    policy = np.zeros(grid.n_states, dtype=int)
    v = np.zeros(grid.n_states)
    while True:
        while True:  # evaluate the policy: its own backups until its values settle
            q = gw.backup(grid, v, gamma)
            new = q[np.arange(grid.n_states), policy]
            change = float(np.abs(new - v).max())
            v = new
            yield _showing(policy, v), change, 0
            if change < TOL:
                break
        # switch only where another action is strictly better: ties would flip back and forth
        rows = np.arange(grid.n_states)
        better = _open(grid) & (q.max(1) > q[rows, policy] + 1e-12)
        greedy = np.where(better, q.argmax(1), policy)
        improved = int(better.sum())
        if not improved:
            return
        policy = greedy
        yield _showing(policy, v), 0.0, improved


def _showing(policy: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A Q-shaped table whose greedy arrow is the policy's and whose max is V (for drawing and
    for measuring the policy against the optimal one)."""
    q = np.repeat(v[:, None], 4, axis=1) - 1e-9
    q[np.arange(len(v)), policy] = v
    return q


def _open(grid: gw.Grid) -> np.ndarray:
    mask = np.zeros(grid.n_states, dtype=bool)
    mask[grid.open_states] = True
    return mask


def _changed(grid: gw.Grid, before: np.ndarray, after: np.ndarray) -> int:
    """Open cells whose greedy action differs (a cell where every action ties counts as none)."""
    return sum(
        1
        for s in grid.open_states
        if np.ptp(before[s]) > 0 and int(before[s].argmax()) != int(after[s].argmax())
    )


# ---------------------------------------------------------------- questions


def _exit_taken(view) -> tuple[str, str]:
    taken = view.view.get("exit")
    answer = {"g": "the small exit, near", "G": "the goal, far"}.get(taken, "neither")
    value = view.last("value of S", 0.0) or 0.0
    return answer, f"The greedy way from S ends at {answer}; S is worth {value:.2f}."


def _small_exit_first(view) -> tuple[str, str]:
    sweeps, ends = view.series(HEADS_FOR)
    small = [k for k, e in zip(sweeps, ends) if e == EXIT_CODE["g"]]
    goal = next((k for k, e in zip(sweeps, ends) if e == EXIT_CODE["G"]), None)
    first = bool(small) and (goal is None or small[0] < goal)
    said = (
        f"S pointed to the small exit at sweeps {small[0]}–{small[-1]}"
        if small
        else "S never pointed to the small exit"
    )
    return ("yes, for a few sweeps" if first else "no, to the goal from the start"), (
        f"{said}; to the goal from sweep {goal}." if goal is not None else f"{said}."
    )


QUESTIONS = [
    Question(
        "Two exits: a small one (+0.5) two steps from S, the goal (+1) six steps away. With γ = 0.6, "
        "which one will the optimal agent head for?",
        ("the small exit, near", "the goal, far"),
        {"world": "two exits", "gamma": 0.6, "sweep_ms": 0},
        _exit_taken,
        "At γ = 0.6 the goal, six steps away, is worth 0.6⁵ ≈ 8% of +1 by the time it counts, while "
        "the near exit keeps 60% of its +0.5. A short horizon (1/(1 − γ) = 2.5 steps) makes the "
        "agent settle for the near, small reward; at γ = 0.9 it walks to the goal.",
    ),
    Question(
        "At γ = 0.9 the optimal agent in the two-exits world walks to the goal. Sweep by sweep of "
        "value iteration, will S's arrow point the way of the small exit first?",
        ("yes, for a few sweeps", "no, to the goal from the start"),
        {"world": "two exits", "gamma": 0.9, "method": "value iteration", "sweep_ms": 0},
        _small_exit_first,
        "A sweep carries each value one cell further: after two sweeps S sees the small exit, two "
        "steps away, and not yet the goal, six away. Only the sixth sweep brings the goal's value to "
        "S, and its arrow turns. Values spread out from the rewards, a step a sweep.",
    ),
]


BELLMAN = Experiment(BellmanConfig, train, cost, False)  # a table of ~50 cells: the CPU's
