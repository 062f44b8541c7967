"""Chapter 17 — Reinforcement learning: the page's two experiments, side by side in tabs.

Tabular Q-learning on a grid world (labs/qlearning.py, the world in labs/gridworld.py), checked
against value iteration on the same grid; value and policy iteration sweep by sweep, the Bellman
backup made visible (labs/bellman.py); and a DQN on gymnasium's CartPole (labs/dqn.py), with
a replay buffer and a target network, explained by Integrated Gradients over the state.
"""

from labs import dqn
from labs.bellman import BELLMAN, BellmanConfig
from labs.bellman import QUESTIONS as BELLMAN_QUESTIONS
from labs.core.contract import Experiment
from labs.dqn import CartPoleConfig
from labs.qlearning import GRID, QUESTIONS, GridConfig, train_grid

CARTPOLE = Experiment(CartPoleConfig, dqn.train, dqn.cost, False)  # a 64-unit MLP: overhead-bound
# by part, in the order of the page's Train buttons (labs/core/contract.py)
EXPERIMENTS = {"grid": GRID, "bellman": BELLMAN, "cartpole": CARTPOLE}

__all__ = [
    "BELLMAN",
    "BELLMAN_QUESTIONS",
    "CARTPOLE",
    "GRID",
    "QUESTIONS",
    "BellmanConfig",
    "CartPoleConfig",
    "GridConfig",
    "train_grid",
]
