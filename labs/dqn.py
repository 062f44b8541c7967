"""Chapter 17, second half: a deep Q-network balances gymnasium's CartPole (Mnih et al., 2015).

Q-learning's table becomes a small MLP from the 4 numbers of the state (cart position and
velocity, pole angle and angular velocity) to a Q-value per action (push left, push right). Two
tricks keep it from chasing its own tail: a replay buffer (learn from random old transitions,
not only the last, correlated ones) and a target network (a frozen copy computes the targets,
refreshed every few hundred steps). After training: the greedy agent replayed frame by frame,
and Integrated Gradients of the chosen action's Q-value over the four state features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients
from torch import nn
from torch.nn import functional as F

from labs.core import budget
from labs.core.config import ConfigError, check, knob
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict

try:  # the RL chapter's one extra dependency: without it the rest of the lab still works
    import gymnasium
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    gymnasium = None

FEATURES = ("cart position", "cart velocity", "pole angle", "pole angular velocity")
ACTIONS = ("push left", "push right")
LEARNING_STARTS = 500  # random transitions in the buffer before the first update
GREEDY_EPISODES = 10  # episodes the trained agent (and a random one) are scored over
MAX_RETURN = 500  # CartPole-v1 ends an episode after 500 steps
GYM_MISSING = (
    "gymnasium is not installed on this server, so CartPole cannot run: install it with "
    "`pip install 'gymnasium>=1.0,<2'` (the grid world above needs nothing extra)."
)


def available() -> bool:
    return gymnasium is not None


@dataclass(frozen=True)
class CartPoleConfig:
    steps: int = knob(
        20000, "Environment steps", "Moves of the cart, in all episodes.", lo=1000, hi=500000, step=1000
    )
    learning_rate: float = knob(1e-3, "Learning rate", "Adam's step size.", lo=1e-5, hi=1e-2, log=True)
    gamma: float = knob(
        0.99, "γ (discount)", "How much a reward one step later is worth.", lo=0.8, hi=0.999, step=0.001
    )
    exploration: float = knob(
        0.25,
        "Exploration share",
        "Share of the steps over which ε falls from 1 to its floor.",
        lo=0.01,
        hi=1.0,
        step=0.01,
    )
    epsilon_end: float = knob(
        0.02, "ε floor", "Chance of a random push once exploration is over.", lo=0.0, hi=0.5, step=0.01
    )
    replay: int = knob(
        20000,
        "Replay buffer",
        "Transitions kept to learn from; 1 = only the latest one.",
        lo=1,
        hi=200000,
        step=1,
    )
    target_every: int = knob(
        250,
        "Target network every",
        "Steps between copies into the frozen target net; 1 = no target net.",
        lo=1,
        hi=5000,
        step=1,
    )
    batch_size: int = knob(64, "Batch size", "Transitions per update.", lo=1, hi=512, step=1)
    train_every: int = knob(2, "Update every", "Environment steps per gradient step.", lo=1, hi=16, step=1)
    hidden: int = knob(
        64, "Width", "Units in each of the Q-network's two hidden layers.", lo=8, hi=512, step=8
    )
    seed: int = knob(0, "Seed", "Same seed, same episodes, same run.", lo=0, hi=9999, step=1)


def q_network(hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2)
    )


def cost(cfg: CartPoleConfig) -> budget.Cost:
    params = 4 * cfg.hidden + cfg.hidden**2 + 2 * cfg.hidden
    return budget.Cost(
        params,
        3 * cfg.batch_size * (2 * cfg.hidden + 2),
        cfg.steps,
        6 * params * cfg.batch_size * 1.5 / cfg.train_every,
        # a gym step and a forward pass per step, an update every train_every: overhead-bound
        120 + 200 / cfg.train_every,
        data=cfg.replay * 11,
    )


class Replay:
    """A ring buffer of transitions, as tensors (sampled without a DataLoader)."""

    def __init__(self, size: int):
        self.states, self.next_states = torch.zeros(size, 4), torch.zeros(size, 4)
        self.actions = torch.zeros(size, dtype=torch.long)
        self.rewards, self.ends = torch.zeros(size), torch.zeros(size)
        self.size, self.at, self.full = size, 0, False

    def __len__(self) -> int:
        return self.size if self.full else self.at

    def add(self, s, a: int, r: float, s2, end: bool) -> None:
        i = self.at
        self.states[i], self.next_states[i] = torch.as_tensor(s), torch.as_tensor(s2)
        self.actions[i], self.rewards[i], self.ends[i] = a, r, float(end)
        self.at = (i + 1) % self.size
        self.full = self.full or self.at == 0

    def sample(self, n: int, g: torch.Generator):
        i = torch.randint(0, len(self), (n,), generator=g)
        return self.states[i], self.actions[i], self.rewards[i], self.next_states[i], self.ends[i]


def epsilon_at(step: int, cfg: CartPoleConfig) -> float:
    span = max(1, int(cfg.exploration * cfg.steps))
    return max(cfg.epsilon_end, 1 - (1 - cfg.epsilon_end) * step / span)


def make_env():
    if gymnasium is None:
        raise ConfigError(GYM_MISSING)
    return gymnasium.make("CartPole-v1")


def train(cfg: CartPoleConfig, device: torch.device):
    """ε-greedy steps; an update every `train_every` steps on a batch from the buffer, toward
    r + γ max Q_target(s'); the target net copied every `target_every` steps."""
    check(cfg)
    env = make_env()
    g = seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net, target = q_network(cfg.hidden).to(device), q_network(cfg.hidden).to(device)
    target.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    buffer = Replay(cfg.replay)
    cadence = Cadence(cfg.steps, max_snaps=200, min_seconds=0.1)
    random_return = evaluate(env, None, GREEDY_EPISODES, cfg.seed + 10_000)
    returns: list[tuple[int, float]] = []
    state, _ = env.reset(seed=cfg.seed)
    episode_return, step = 0.0, 0
    notes = [f"A random policy keeps the pole up for {random_return:.0f} steps on average (its return)."]
    watch = LossWatch()
    for step in steps(cfg.steps):
        eps = epsilon_at(step, cfg)
        with torch.no_grad():
            q = net(torch.as_tensor(state, device=device).unsqueeze(0))[0]
        action = int(rng.integers(2)) if rng.random() < eps else int(q.argmax())
        state2, reward, terminated, truncated, _ = env.step(action)
        buffer.add(state, action, reward, state2, terminated)  # a time-out is not a fall: bootstrap it
        episode_return += reward
        state = state2
        if terminated or truncated:
            returns.append((step, episode_return))
            state, _ = env.reset()
            episode_return = 0.0
        if len(buffer) >= min(LEARNING_STARTS, cfg.replay) and step % cfg.train_every == 0:
            loss = td_loss(net, target, buffer.sample(cfg.batch_size, g), cfg.gamma, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            log(step, td_loss=loss)
        if step % cfg.target_every == 0:
            target.load_state_dict(net.state_dict())
        if cadence.due(step):
            watch.check(step, Q_values=q)
            recent = [r for _, r in returns[-20:]]
            metrics = {"epsilon": eps, "replay size": float(len(buffer)), "episodes": float(len(returns))}
            if recent:
                metrics["mean return (last 20)"] = float(np.mean(recent))
            view = {
                "state": np.asarray(state, dtype=np.float32),
                "q": q.cpu().numpy(),
                "returns": np.asarray(returns, dtype=np.float32).reshape(-1, 2),
                "random_return": random_return,
            }
            yield Snapshot(step, cfg.steps, metrics, view=view, notes=notes)
            notes = []
    net = net.cpu().eval()
    greedy = evaluate(env, net, GREEDY_EPISODES, cfg.seed + 20_000)
    yield Snapshot(
        step, cfg.steps, {"greedy mean return": greedy}, view={"replay": replay(env, net, cfg.seed + 30_000)}
    )
    env.close()
    yield Snapshot(step, cfg.steps, final=True, state_dict=cpu_state_dict(net))


def td_loss(net, target, batch, gamma: float, device) -> torch.Tensor:
    s, a, r, s2, end = (t.to(device) for t in batch)
    q = net(s).gather(1, a[:, None])[:, 0]
    with torch.no_grad():
        goal = r + gamma * (1 - end) * target(s2).max(1).values
    return F.smooth_l1_loss(q, goal)


@torch.no_grad()
def evaluate(env, net: nn.Module | None, episodes: int, seed: int) -> float:
    """Mean return of the greedy policy (or of random pushes, with no net)."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for k in range(episodes):
        state, _ = env.reset(seed=seed + k)
        done = False
        while not done:
            if net is None:
                action = int(rng.integers(2))
            else:
                action = int(net(torch.as_tensor(state).unsqueeze(0)).argmax())
            state, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
    return total / episodes


def replay(env, net: nn.Module, seed: int) -> dict:
    """One greedy episode, frame by frame: states, Q-values and actions."""
    states, qs = [], []
    state, _ = env.reset(seed=seed)
    done = False
    while not done:
        with torch.no_grad():
            q = net(torch.as_tensor(state).unsqueeze(0))[0]
        states.append(np.asarray(state, dtype=np.float32))
        qs.append(q.numpy())
        state, _, terminated, truncated, _ = env.step(int(q.argmax()))
        done = terminated or truncated
    states_arr, qs_arr = np.stack(states), np.stack(qs)
    return {
        "states": states_arr,
        "q": qs_arr,
        "actions": qs_arr.argmax(1),
        "attributions": explain(net, states_arr),
        "ended": ending(state, truncated),
    }


def ending(state, truncated: bool) -> str:
    """Why an episode ended, from its last state: CartPole fails past ±2.4 m or ±12°."""
    if truncated:
        return "it balanced to the end (500 steps)"
    return "the cart ran off the track" if abs(state[0]) > 2.4 else "the pole fell past 12°"


class Margin(nn.Module):
    """Q(s, a) − Q(s, other action): what makes the agent push one way rather than the other."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        q = self.net(x)
        return torch.stack([q[:, 0] - q[:, 1], q[:, 1] - q[:, 0]], 1)


def explain(net: nn.Module, states: np.ndarray) -> dict[str, np.ndarray]:
    """Integrated Gradients over the four state features, for every frame, from the resting
    state (cart centred and still, pole upright: all zeros): of the chosen action's Q-value
    (what the agent expects to collect from here) and of its margin over the other action
    (why this push and not the other)."""
    x = torch.as_tensor(states)
    with torch.no_grad():
        chosen = net(x).argmax(1)
    zeros = torch.zeros_like(x)
    return {
        "value": IntegratedGradients(net)
        .attribute(x, baselines=zeros, target=chosen, n_steps=32)
        .detach()
        .numpy(),
        "margin": IntegratedGradients(Margin(net))
        .attribute(x, baselines=zeros, target=chosen, n_steps=32)
        .detach()
        .numpy(),
    }
