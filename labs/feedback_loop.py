"""Chapter 22's second experiment: a recommender retrained on what it recommended.

A generated world of users and items (hidden genres and tastes, as chapter 11's ratings, and an
appeal of each item): each user clicks an item shown to them with a probability the model never
sees. Round 0 shows every user a few items at random. Then, round after round, chapter 11's dot
product model (labs/collaborative.py `DotProduct`) is trained on every (user, item) pair so far,
a click counting 1 and everything else 0 (the usual way to learn from clicks: an item never shown
reads as an item not wanted), each user is shown the items it scores highest among those they have
not clicked, and their clicks are added. Side by side under one seed: the loop on its own picks,
and the same loop with a share of each user's slots given to items drawn at random
(exploration). Measured each round: how concentrated the clicks are (the Gini coefficient of
clicks per item), how much of the catalogue was shown at all, and the click rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from labs.collaborative import DotProduct
from labs.core import budget
from labs.core.compare import side_by_side
from labs.core.config import check, knob
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.snapshot import Snapshot, cpu_state_dict
from labs.ratings import GENRES

LOOPS = {"own": "own picks only", "explore": "with exploration"}


@dataclass(frozen=True)
class FeedbackConfig:
    users: int = knob(300, "Users", "People the recommender serves.", lo=50, hi=2000, step=50)
    items: int = knob(300, "Items", "The catalogue.", lo=50, hi=2000, step=50)
    shown: int = knob(5, "Shown per round", "Items each user is shown in a round.", lo=1, hi=20, step=1)
    rounds: int = knob(
        10, "Rounds", "Times the recommender is retrained on its own picks.", lo=1, hi=40, step=1
    )
    exploration: float = knob(
        0.2,
        "Exploration",
        "Share of the second loop's slots given to items drawn at random.",
        lo=0.0,
        hi=1.0,
        step=0.05,
    )
    factors: int = knob(8, "Factors", "Numbers per user and per item.", lo=1, hi=64, step=1)
    epochs: int = knob(
        3, "Epochs per round", "Passes over all pairs at each retraining.", lo=1, hi=20, step=1
    )
    learning_rate: float = knob(0.02, "Learning rate", "Adam's step size.", lo=1e-4, hi=0.3, log=True)
    batch_size: int = knob(4096, "Batch size", "(user, item) pairs per step.", lo=256, hi=65536, step=256)
    seed: int = knob(0, "Seed", "Same seed, same world, same first round.", lo=0, hi=9999, step=1)


@lru_cache(maxsize=4)
def world(users: int, items: int, seed: int) -> np.ndarray:
    """Each user's click probability for each item: a base rate, the item's appeal, and the
    user's taste for the item's genres."""
    rng = np.random.default_rng((seed, 23))
    genre = rng.integers(0, len(GENRES), items)
    profile = np.eye(len(GENRES))[genre] + rng.normal(0, 0.15, (items, len(GENRES)))
    taste = rng.normal(0, 0.8, (users, len(GENRES)))
    appeal = rng.normal(0, 0.45, items)
    click = 1 / (1 + np.exp(-(-1.5 + appeal[None, :] + taste @ profile.T)))
    return click.astype(np.float32)


def gini(counts: np.ndarray) -> float:
    """0 when every item has as many as the others, towards 1 when a few have everything."""
    c = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(c), c.sum()
    return float((2 * np.arange(1, n + 1) - n - 1).dot(c) / (n * total)) if total else 0.0


def pick(scores: np.ndarray, clicked: np.ndarray, shown: int, explore: float, rng) -> np.ndarray:
    """Each user's `shown` best-scored items not clicked yet; each slot, with probability
    `explore`, an unclicked item drawn at random instead (never one shown twice in a round)."""
    scores = np.where(clicked, -np.inf, scores)
    picks = np.argsort(-scores, axis=1)[:, :shown]
    for user in np.flatnonzero((rng.random(picks.shape) < explore).any(1)):
        for slot in np.flatnonzero(rng.random(shown) < explore):
            free = np.setdiff1d(np.flatnonzero(~clicked[user]), picks[user])
            if len(free):
                picks[user, slot] = rng.choice(free)
    return picks


def round_numbers(picks: np.ndarray, clicks_now: np.ndarray, clicked: np.ndarray, n_items: int) -> dict:
    exposure = np.bincount(picks.ravel(), minlength=n_items)
    per_item = clicked.sum(0)
    top = np.sort(per_item)[::-1][: max(1, n_items // 10)]
    return {
        "click concentration (Gini)": gini(per_item),
        "exposure concentration (Gini)": gini(exposure),
        "catalogue shown": float((exposure > 0).mean()),
        "click rate": float(clicks_now.mean()),
        "top 10% share of clicks": float(top.sum() / max(per_item.sum(), 1)),
    }


def cost(cfg: FeedbackConfig) -> budget.Cost:
    pairs = cfg.users * cfg.items
    params = (cfg.users + cfg.items) * (cfg.factors + 1)
    per_round = math.ceil(pairs / cfg.batch_size) * cfg.epochs
    return budget.Cost(
        2 * params,
        2 * cfg.batch_size * (2 * cfg.factors + 4),
        per_round * cfg.rounds,
        2 * 6 * cfg.batch_size * (cfg.factors + 1),
        # both loops' steps on embedding lookups of a batch of pairs, and each round's scoring of
        # every pair and its picks, per step (measured: the default, 660 steps, takes 4.4 s)
        400,
        data=2 * pairs * 3,
        evaluation=pairs * (cfg.factors + 2),
    )


def train(cfg: FeedbackConfig, device: torch.device):
    """Both loops side by side, in one world."""
    check(cfg)
    loops = {LOOPS["own"]: 0.0, LOOPS["explore"]: cfg.exploration}
    yield from side_by_side({name: train_loop(cfg, share, device) for name, share in loops.items()}, device)


def train_loop(cfg: FeedbackConfig, explore: float, device: torch.device):
    """Round 0 at random, then `rounds` retrainings on every pair so far, each followed by a
    round of picks and the clicks they get; a snapshot after every round."""
    g = seed_everything(cfg.seed)
    click_p = world(cfg.users, cfg.items, cfg.seed)
    rng = np.random.default_rng((cfg.seed, 24))  # both loops: the same first round, the same dice
    clicked = np.zeros((cfg.users, cfg.items), dtype=bool)
    users = torch.arange(cfg.users, device=device).repeat_interleave(cfg.items)
    items = torch.arange(cfg.items, device=device).repeat(cfg.users)
    model = DotProduct(cfg.users, cfg.items, cfg.factors, 0.0).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    batches = math.ceil(cfg.users * cfg.items / cfg.batch_size)  # one pass over every pair
    per_round = batches * cfg.epochs
    total = per_round * cfg.rounds
    watch = LossWatch()
    picks = np.stack([rng.choice(cfg.items, cfg.shown, replace=False) for _ in range(cfg.users)])
    numbers = _clicks(picks, click_p, clicked, rng, cfg.items)
    notes = [
        f"{cfg.users} users, {cfg.items} items; round 0 shows each user {cfg.shown} items at random: "
        f"{numbers['click rate']:.0%} of them clicked."
    ]
    round_no, step, target, order = 0, 0, None, None
    for step in steps(total):
        at = (step - 1) % per_round
        if at == 0:  # a retraining begins: on every pair, a click 1, anything else 0
            target = torch.from_numpy(clicked.ravel().astype(np.float32)).to(device)
        if at % batches == 0:
            order = torch.randperm(len(target), generator=g).to(device)
        batch = order[(at % batches) * cfg.batch_size : (at % batches + 1) * cfg.batch_size]
        loss = ((model(users[batch], items[batch]) - target[batch]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log(step, train_mse=loss)
        if step == 1:  # round 0's numbers at once: the first chart comes before any retraining
            yield Snapshot(step, total, numbers | {"round": 0}, view=_tail(clicked), notes=notes)
            notes = []
        if at == per_round - 1:  # retrained: this round's picks, and what they get
            watch.check(step, loss=loss)
            round_no += 1
            with torch.no_grad():
                scores = model(users, items).view(cfg.users, cfg.items).cpu().numpy()
            picks = pick(scores, clicked, cfg.shown, explore, rng)
            numbers = _clicks(picks, click_p, clicked, rng, cfg.items)
            yield Snapshot(step, total, numbers | {"round": round_no}, view=_tail(clicked))
    yield Snapshot(step, total, final=True, state_dict=cpu_state_dict(model))


def _clicks(picks: np.ndarray, click_p: np.ndarray, clicked: np.ndarray, rng, n_items: int) -> dict:
    """Users click what they are shown with their own probability; the clicks are kept."""
    rows = np.repeat(np.arange(len(picks)), picks.shape[1])
    now = rng.random(rows.shape) < click_p[rows, picks.ravel()]
    clicked[rows[now], picks.ravel()[now]] = True
    return round_numbers(picks, now, clicked, n_items)


def _tail(clicked: np.ndarray) -> dict:
    """Clicks per item, most clicked first: the long tail as it stands."""
    return {"clicks_per_item": np.sort(clicked.sum(0))[::-1].astype(np.int32)}
