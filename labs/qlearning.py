"""Chapter 17, first half: tabular Q-learning on a grid world, one step at a time.

    Q(s, a) ← Q(s, a) + α [r + γ max_a' Q(s', a') − Q(s, a)]

The agent acts ε-greedily and learns only from the transitions it lives through; value
iteration on the same grid, which knows the dynamics, says what the optimal policy is, and every
snapshot measures how much of it the agent has found.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from labs import gridworld as gw
from labs.core import budget
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import steps, stop_requested
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot

MAX_EPISODE_STEPS = 200
DECAY = 20  # visits after which α has halved (when it falls with visits)
MAPS = {
    "detour": "detour: walls, a pit beside the way",
    "bridge": "bridge: a row of pits along the short way",
    "two exits": "two exits: a small one near, the goal far",
}


@dataclass(frozen=True)
class GridConfig:
    world: str = knob("detour", "World", "", choices=tuple(MAPS), labels=MAPS)
    alpha: float = knob(
        0.5, "α (learning rate)", "How far each update moves Q toward its target.", lo=0.01, hi=1.0, step=0.01
    )
    gamma: float = knob(
        0.95, "γ (discount)", "How much a reward one step later is worth.", lo=0.5, hi=0.99, step=0.01
    )
    epsilon: float = knob(
        0.2, "ε (exploration)", "Chance of a random action at each step.", lo=0.0, hi=1.0, step=0.05
    )
    slip: float = knob(0.0, "Slip", "Chance that a move goes sideways instead.", lo=0.0, hi=0.6, step=0.05)
    episodes: int = knob(
        3000,
        "Episodes",
        "Each from the start until the goal, the pit or 200 steps.",
        lo=10,
        hi=20000,
        step=10,
    )
    alpha_decay: bool = knob(
        False,
        "α falls with visits",
        "α·K/(K + visits of that cell and action), K = 20: big steps while Q is a guess, small ones "
        "once it is known, so Q settles despite the slips (Robbins & Monro). Off: α stays.",
    )
    random_starts: bool = knob(
        True,
        "Exploring starts",
        "Each episode starts in a random open cell, so every cell gets tried (Sutton & Barto, 5.3); "
        "off: always from S.",
    )
    watch_ms: int = knob(
        0,
        "Watch: ms per step",
        "0 = as fast as possible; 100 = watch the agent walk, a step a frame.",
        lo=0,
        hi=500,
        step=1,
    )
    seed: int = knob(0, "Seed", "Same seed, same slips and choices.", lo=0, hi=9999, step=1)


def grid_of(cfg: GridConfig) -> gw.Grid:
    return gw.Grid(gw.MAPS[cfg.world], cfg.slip)


STEPS_PER_EPISODE = 20  # about, once the agent has learned something (with exploring starts)
FRAME_SECONDS = 0.05  # a watched agent sends at most 20 frames a second, however fast it walks


def grid_cost(cfg: GridConfig) -> budget.Cost:
    """An episode is ~0.5 ms of table lookups (~80 tiny ops); watching adds its pauses."""
    pauses = STEPS_PER_EPISODE * cfg.watch_ms / 1000
    return budget.Cost(4 * 64, 0, cfg.episodes, 0, 80, optimizer_states=0, wait=pauses)


def choose(q: np.ndarray, s: int, epsilon: float, rng: np.random.Generator) -> int:
    """ε-greedy, with ties broken at random (all of Q starts at 0: no action is favoured)."""
    if rng.random() < epsilon:
        return int(rng.integers(4))
    best = np.flatnonzero(q[s] == q[s].max())
    return int(rng.choice(best))


def train_grid(cfg: GridConfig, device=None):
    check(cfg)
    grid = grid_of(cfg)
    rng = np.random.default_rng(cfg.seed)
    q = np.zeros((grid.n_states, 4))
    visits = np.zeros((grid.n_states, 4))
    q_star = gw.value_iteration(grid, cfg.gamma)
    cadence = Cadence(cfg.episodes, max_snaps=150, min_seconds=0.1)
    view = {"rows": list(grid.rows), "q_star": q_star, "optimal_path": gw.greedy_path(grid, q_star)}
    notes = [
        f"The {cfg.world} world: {len(grid.open_states)} open cells; value iteration with the known "
        f"slip ({cfg.slip:.0%}) gives the optimal policy the agent is measured against."
    ]
    watching, shown = cfg.watch_ms > 0, -math.inf
    episode, stop = 0, False
    for episode in steps(cfg.episodes):
        s = int(rng.choice(grid.open_states)) if cfg.random_starts else grid.start
        total, trail = 0.0, [s]
        for _ in range(MAX_EPISODE_STEPS):
            a = choose(q, s, cfg.epsilon, rng)
            s2, r, done = grid.step(s, a, rng)
            target = r if done else r + cfg.gamma * q[s2].max()
            visits[s, a] += 1
            alpha = cfg.alpha * DECAY / (DECAY + visits[s, a] - 1) if cfg.alpha_decay else cfg.alpha
            q[s, a] += alpha * (target - q[s, a])
            total += r
            s = s2
            trail.append(s)
            if watching:  # a step a frame: the agent walks while the learner watches
                time.sleep(cfg.watch_ms / 1000)
            if watching and time.perf_counter() - shown >= FRAME_SECONDS:
                shown = time.perf_counter()
                picture = {**view, "q": q.copy(), "trail": trail[-40:]}
                yield Snapshot(episode, cfg.episodes, view=picture, notes=notes)
                view, notes = {}, []
                if stop_requested():  # a watched episode is long: Stop is heard within it
                    stop = True
                    break
            if done:
                break
        metrics = {
            "return": total,
            "length": len(trail) - 1,
            "optimal policy share": gw.agreement(grid, q, q_star),
            "greedy path reaches the goal": float(grid.cell(gw.greedy_path(grid, q)[-1]) == "G"),
        }
        if stop:
            break
        if watching or cadence.due(episode):
            picture = {**view, "q": q.copy(), "trail": trail[-40:], "path": gw.greedy_path(grid, q)}
            yield Snapshot(episode, cfg.episodes, metrics, view=picture, notes=notes)
            view, notes = {}, []
    yield Snapshot(episode, cfg.episodes, view={"q": q.copy(), "path": gw.greedy_path(grid, q)})
    # the "weights" a learner downloads: the Q-table, a row per cell (row-major), a column per action
    yield Snapshot(episode, cfg.episodes, final=True, state_dict={"q_table": torch.from_numpy(q.copy())})


def converged_at(shares: list[float], episodes: list[int]) -> int | None:
    """The first episode from which the greedy policy stayed optimal everywhere."""
    at = None
    for e, share in zip(episodes, shares):
        if share >= 1.0:
            at = e if at is None else at
        else:
            at = None
    return at


# ---------------------------------------------------------------- questions


def _greedy_way(view) -> tuple[str, str]:
    path = view.view.get("path", [])
    if not path:
        return "–", "The run ended before it found a way."
    rows = view.view["rows"]
    width = len(rows[0])
    beside_pits = any(rows[s // width - 1][s % width] == "P" for s in path[1:-1] if s // width > 0)
    answer = "the long way round, away from the pits" if not beside_pits else "the short way, along the pits"
    return answer, f"The greedy path takes {len(path) - 1} steps" + (
        ", along the pits." if beside_pits else ", away from them."
    )


def _found_it(view) -> tuple[str, str]:
    share = view.last("optimal policy share", 0.0) or 0.0
    answer = "all of them" if share >= 1.0 else "some, not all"
    return answer, f"Greedy action optimal in {share:.0%} of the open cells."


QUESTIONS = [
    Question(
        "The bridge: the short way runs right beside a row of pits. With a 30% chance of slipping "
        "sideways at each step, which way will the trained agent take?",
        ("the short way, along the pits", "the long way round, away from the pits"),
        {"world": "bridge", "slip": 0.3, "episodes": 1500, "alpha_decay": True},
        _greedy_way,
        "Along the pits, every step risks a slip into one: −1. A few more steps of −0.02 cost less "
        "than that risk, and Q-learning learns it from the falls alone, without knowing the slip.",
    ),
    Question(
        "With ε = 0 (never a random action) and every episode starting from S, after 3,000 episodes "
        "in the detour world, in how many cells will the agent's greedy action be optimal?",
        ("all of them", "some, not all"),
        {"world": "detour", "epsilon": 0.0, "random_starts": False, "slip": 0.0, "episodes": 3000},
        _found_it,
        "An agent that never explores keeps walking the first way that worked and never learns the "
        "values of cells off it: exploration is how it finds out.",
    ),
]

GRID = Experiment(GridConfig, train_grid, grid_cost, False)
