"""A grid world for chapter 17 (in the spirit of Karpathy's REINFORCEjs): walls, a goal, a pit,
and a floor that may slip. Its dynamics are known, so value iteration gives the optimal policy
that tabular Q-learning, which only ever sees transitions, should find on its own."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

MAPS = {
    "detour": (
        "........",
        ".##.#...",
        ".#..#.P.",
        ".#.##...",
        "S..#..#G",
        ".#...##.",
        "...#....",
    ),
    "bridge": (
        "PPPPPPPP",
        "S......G",
        "........",
        "...##...",
        "........",
    ),
    # a small exit two steps from S, the big one six: which is worth more depends on γ
    "two exits": (
        "....#....",
        "g.S.....G",
        "....#....",
    ),
}
ACTIONS = ("up", "right", "down", "left")
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))
ARROWS = ("↑", "→", "↓", "←")
GOAL_REWARD, PIT_REWARD, SMALL_EXIT_REWARD = 1.0, -1.0, 0.5
EXITS = "GPg"  # cells that end an episode: the goal, the pit, a small exit


@dataclass(frozen=True)
class Grid:
    rows: tuple[str, ...]
    slip: float  # chance that a move goes to one side instead (left or right of the intended)
    step_reward: float = -0.02  # a small cost per step: shorter ways are better

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.rows[0])

    def cell(self, s: int) -> str:
        return self.rows[s // self.shape[1]][s % self.shape[1]]

    @property
    def n_states(self) -> int:
        return self.shape[0] * self.shape[1]

    @cached_property
    def start(self) -> int:
        return next(s for s in range(self.n_states) if self.cell(s) == "S")

    def terminal(self, s: int) -> bool:
        return self.cell(s) in EXITS

    def wall(self, s: int) -> bool:
        return self.cell(s) == "#"

    def move(self, s: int, a: int) -> int:
        """Where action a leads from s on a dry floor: walls and edges keep the agent in place."""
        r, c = divmod(s, self.shape[1])
        r2, c2 = r + MOVES[a][0], c + MOVES[a][1]
        if not (0 <= r2 < self.shape[0] and 0 <= c2 < self.shape[1]):
            return s
        s2 = r2 * self.shape[1] + c2
        return s if self.wall(s2) else s2

    def reward(self, s2: int) -> float:
        return {"G": GOAL_REWARD, "P": PIT_REWARD, "g": SMALL_EXIT_REWARD}.get(
            self.cell(s2), self.step_reward
        )

    def outcomes(self, s: int, a: int) -> list[tuple[float, int]]:
        """(probability, next state) of action a: intended with 1 − slip, each side slip/2."""
        sides = ((a + 1) % 4, (a + 3) % 4)
        out = [(1 - self.slip, self.move(s, a))]
        if self.slip:
            out += [(self.slip / 2, self.move(s, b)) for b in sides]
        return out

    def step(self, s: int, a: int, rng: np.random.Generator) -> tuple[int, float, bool]:
        if self.slip and rng.random() < self.slip:
            a = (a + (1 if rng.random() < 0.5 else 3)) % 4
        s2 = self.move(s, a)
        return s2, self.reward(s2), self.terminal(s2)

    @cached_property
    def open_states(self) -> list[int]:
        """States where a choice is made: not walls, not the goal or the pit."""
        return [s for s in range(self.n_states) if not self.wall(s) and not self.terminal(s)]


def value_iteration(grid: Grid, gamma: float, tol: float = 1e-9) -> np.ndarray:
    """Q*(s, a) by repeated Bellman optimality backups with the known dynamics."""
    q = np.zeros((grid.n_states, 4))
    for _ in range(10_000):
        new = backup(grid, q.max(1), gamma)
        if np.abs(new - q).max() < tol:
            return new
        q = new
    return q


def backup(grid: Grid, v: np.ndarray, gamma: float) -> np.ndarray:
    """One Bellman backup of every open cell and action from the values v of the cells:
    Q(s, a) = Σ p(s' | s, a) [r(s') + γ V(s')], an exit's own value being 0 (nothing follows)."""
    v = np.where([grid.terminal(s) for s in range(grid.n_states)], 0.0, v)
    q = np.zeros((grid.n_states, 4))
    for s in grid.open_states:
        for a in range(4):
            q[s, a] = sum(p * (grid.reward(s2) + gamma * v[s2]) for p, s2 in grid.outcomes(s, a))
    return q


def optimal_actions(q_star: np.ndarray, s: int, tol: float = 1e-6) -> set[int]:
    return {a for a in range(4) if q_star[s, a] >= q_star[s].max() - tol}


def agreement(grid: Grid, q: np.ndarray, q_star: np.ndarray) -> float:
    """Share of open states where Q's greedy action is one of the optimal ones."""
    good = [int(q[s].argmax()) in optimal_actions(q_star, s) for s in grid.open_states]
    return float(np.mean(good))


def greedy_path(grid: Grid, q: np.ndarray, limit: int = 60) -> list[int]:
    """The states a greedy agent visits from the start on a dry floor (no slips)."""
    path, s = [grid.start], grid.start
    for _ in range(limit):
        if grid.terminal(s):
            break
        s = grid.move(s, int(q[s].argmax()))
        path.append(s)
    return path
