"""Chapter 11 — Collaborative filtering.

Nobody tells the model what a film is about. From ratings alone, a dot product of a learned user
vector and a learned item vector, plus a bias for each, learns what each user likes and what each
item offers (Koren, Bell & Volinsky, 2009). Side by side under one seed: the same model with no
factors (biases only: "this user rates high, this film is liked"), and a truncated SVD of the
ratings left after the biases (scikit-learn), fitted once. The ratings are generated from hidden
genres, so the item map can be coloured by the genre the model was never told; MovieLens 100k
is used when it is in the data directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from sklearn.decomposition import TruncatedSVD
from torch import nn

from figures.variants import metric
from labs.core import budget
from labs.core.compare import side_by_side
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.projection import principal_plane
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict
from labs.ratings import Ratings, RatingsUnavailable, generated, movielens, split

PREFERS_GPU = False  # embedding lookups on ~10k ratings: overhead-bound
DATASETS = {"generated": "generated from hidden genres", "movielens": "MovieLens 100k (data directory)"}
VARIANTS = {"dot": "dot product", "biases": "biases only", "svd": "SVD (scikit-learn)"}


@dataclass(frozen=True)
class Config:
    data: str = knob("generated", "Ratings", "", choices=tuple(DATASETS), labels=DATASETS)
    variants: tuple = knob(
        tuple(VARIANTS),
        "Compare",
        "The dot product with biases; the biases alone; an SVD of what the biases leave.",
        choices=tuple(VARIANTS),
        multi=True,
        labels=VARIANTS,
    )
    factors: int = knob(
        8, "Factors", "Numbers per user and per item (and the SVD's rank).", lo=1, hi=128, step=1
    )
    weight_decay: float = knob(
        0.1, "Weight decay", "L2 penalty on each rating's user and item vectors.", lo=0.0, hi=0.5, step=0.005
    )
    learning_rate: float = knob(1e-2, "Learning rate", "Adam's step size.", lo=1e-4, hi=0.3, log=True)
    epochs: int = knob(30, "Epochs", "Passes over the training ratings.", lo=1, hi=500, step=1)
    batch_size: int = knob(256, "Batch size", "Ratings per step.", lo=16, hi=4096, step=16)
    users: int = knob(600, "Users", "Generated users.", lo=50, hi=5000, step=50)
    items: int = knob(400, "Items", "Generated items (films).", lo=50, hi=5000, step=50)
    density: float = knob(0.1, "Density", "Share of user-item pairs rated.", lo=0.01, hi=0.3, step=0.01)
    noise: float = knob(0.5, "Noise", "Std of each rating's noise, in stars.", lo=0.0, hi=1.5, step=0.1)
    seed: int = knob(0, "Seed", "Same seed, same ratings, same split, same run.", lo=0, hi=9999, step=1)


def load_ratings(cfg: Config) -> tuple[Ratings, list[str]]:
    """The chosen ratings, or the generated ones with a note saying why MovieLens is not here."""
    if cfg.data == "movielens":
        try:
            return movielens(), []
        except RatingsUnavailable as err:
            return _generated(cfg), [f"{err} Training on the generated ratings instead."]
    return _generated(cfg), []


def _generated(cfg: Config) -> Ratings:
    return generated(cfg.users, cfg.items, cfg.density, cfg.noise, cfg.seed)


# ---------------------------------------------------------------- the model


class DotProduct(nn.Module):
    """rating ≈ mean + user bias + item bias + user vector · item vector (0 factors: biases only)."""

    def __init__(self, n_users: int, n_items: int, factors: int, mean: float):
        super().__init__()
        self.user_bias, self.item_bias = nn.Embedding(n_users, 1), nn.Embedding(n_items, 1)
        # biases only: no factor tables at all (a CUDA embedding of width 0 fails in backward)
        self.user_factors = nn.Embedding(n_users, factors) if factors else None
        self.item_factors = nn.Embedding(n_items, factors) if factors else None
        for e in self.modules():
            if isinstance(e, nn.Embedding):  # small: a vector's direction is learned, not drawn
                nn.init.normal_(e.weight, std=0.01)
        self.register_buffer("mean", torch.tensor(float(mean)))

    def parts(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bias part, taste part) of each prediction: what the page splits a score into."""
        bias = self.mean + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]
        if self.user_factors is None:
            return bias, torch.zeros_like(bias)
        taste = (self.user_factors(users) * self.item_factors(items)).sum(1)
        return bias, taste

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        bias, taste = self.parts(users, items)
        return bias + taste


def penalty(model: DotProduct, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Squared length of this batch's vectors and biases, per rating: each user and item is
    pulled toward 0 as often as it is rated (the classic matrix-factorization L2)."""
    biases = model.user_bias(users)[:, 0] ** 2 + model.item_bias(items)[:, 0] ** 2
    if model.user_factors is None:
        return biases.mean()
    vectors = model.user_factors(users).pow(2).sum(1) + model.item_factors(items).pow(2).sum(1)
    return (vectors + biases).mean()


def cost(cfg: Config) -> budget.Cost:
    n = 100_000 if cfg.data == "movielens" else cfg.density * cfg.users * cfg.items
    users, items = max(cfg.users, 943), max(cfg.items, 1682)
    params = (users + items) * (cfg.factors + 1) * len(cfg.variants)
    steps_total = math.ceil(0.8 * n / cfg.batch_size) * cfg.epochs
    return budget.Cost(
        params,
        cfg.batch_size * (cfg.factors + 2) * 6,
        steps_total,
        12 * cfg.batch_size * (cfg.factors + 1),
        60,
        # generating n ratings holds ~40 floats' worth each for a moment (twice as many drawn
        # pairs as kept, in int64, deduplicated and shuffled): 1.8 GB measured at 7.5 million
        data=(3 if cfg.data == "movielens" else 40) * n,
        evaluation=3 * min(n, EVAL_CHUNK) * (cfg.factors + 1),
    )


# ---------------------------------------------------------------- training


def train(cfg: Config, device: torch.device):
    check(cfg)
    ratings, notes = load_ratings(cfg)
    order = [v for v in VARIANTS if v in cfg.variants]  # the live model first: its update comes at once
    runs = {
        VARIANTS[v]: (fit_svd if v == "svd" else train_one)(v, cfg, ratings, notes, device) for v in order
    }
    yield from side_by_side(runs, device)


def tensors(ratings: Ratings, rows: np.ndarray, device: torch.device):
    return (
        torch.from_numpy(ratings.users[rows]).to(device),
        torch.from_numpy(ratings.items[rows]).to(device),
        torch.from_numpy(ratings.values[rows]).to(device),
    )


EVAL_CHUNK = 65_536  # ratings measured at once: a chunk's vectors, not every rating's, are in memory


@torch.no_grad()
def rmse(model: DotProduct, users, items, values, scale) -> float:
    """Root mean squared error over all these ratings, a chunk at a time: 6 million ratings with
    128 factors would otherwise hold ~9 GB of looked-up vectors at once."""
    squared = sum(
        float(((model(users[at : at + EVAL_CHUNK], items[at : at + EVAL_CHUNK]).clamp(*scale)
                - values[at : at + EVAL_CHUNK]) ** 2).sum())
        for at in range(0, len(values), EVAL_CHUNK)
    )  # fmt: skip
    return math.sqrt(squared / max(1, len(values)))


def train_one(variant: str, cfg: Config, ratings: Ratings, notes: list[str], device: torch.device):
    """Adam on squared error plus the L2 penalty; each snapshot measures RMSE on all training
    and validation ratings and (with factors) maps the items."""
    g = seed_everything(cfg.seed)
    train_rows, val_rows = split(len(ratings), cfg.seed)
    users, items, R = tensors(ratings, train_rows, device)
    val = tensors(ratings, val_rows, device)
    factors = cfg.factors if variant == "dot" else 0
    model = DotProduct(ratings.n_users, ratings.n_items, factors, float(R.mean())).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    per_epoch = math.ceil(len(R) / cfg.batch_size)
    total = per_epoch * cfg.epochs
    cadence = Cadence(total, max_snaps=100, min_seconds=0.2)
    counts = np.bincount(ratings.items[train_rows], minlength=ratings.n_items)
    view = {"genre": ratings.genre.tolist(), "titles": ratings.titles, "rated": counts} if factors else {}
    notes = notes + [
        f"{ratings.name}: {ratings.n_users:,} users, {ratings.n_items:,} items, {len(train_rows):,} training "
        f"and {len(val_rows):,} validation ratings."
    ]
    step, perm = 0, torch.empty(0, dtype=torch.long)
    watch = LossWatch()
    for step in steps(total):
        at = (step - 1) % per_epoch
        if at == 0:
            perm = torch.randperm(len(R), generator=g).to(device)
        b = perm[at * cfg.batch_size : (at + 1) * cfg.batch_size]
        mse = ((model(users[b], items[b]) - R[b]) ** 2).mean()
        loss = mse + cfg.weight_decay * penalty(model, users[b], items[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log(step, train_mse=mse)
        if cadence.due(step):
            watch.check(step, loss=loss)
            metrics = {
                "train RMSE": rmse(model, users, items, R, ratings.scale),
                "val RMSE": rmse(model, *val, ratings.scale),
                "epoch": step / per_epoch,
            }
            if factors:
                view["items"] = item_map(model)
            yield Snapshot(step, total, metrics, view=view, notes=notes)
            view, notes = {}, []
    yield Snapshot(step, total, final=True, state_dict=cpu_state_dict(model))


def item_map(model: DotProduct) -> np.ndarray:
    """The item vectors on their principal plane."""
    return principal_plane(model.item_factors.weight.detach().float().cpu().numpy())


def fit_svd(variant: str, cfg: Config, ratings: Ratings, notes: list[str], device: torch.device):
    """Damped mean biases, then a rank-`factors` truncated SVD of what they leave (unrated
    pairs count as 0: "no taste either way"). One snapshot: nothing to watch, a number to beat."""
    train_rows, val_rows = split(len(ratings), cfg.seed)
    predict = svd_predictor(ratings, train_rows, cfg.factors, cfg.seed)
    lo, hi = ratings.scale
    errors = {}
    for name, rows in (("train RMSE", train_rows), ("val RMSE", val_rows)):
        squared = 0.0
        for at in range(0, len(rows), EVAL_CHUNK):  # a chunk's vectors at a time, as rmse()
            chunk = rows[at : at + EVAL_CHUNK]
            pred = np.clip(predict(ratings.users[chunk], ratings.items[chunk]), lo, hi)
            squared += float(((pred - ratings.values[chunk]) ** 2).sum())
        errors[name] = math.sqrt(squared / max(1, len(rows)))
    yield Snapshot(1, 1, errors)
    yield Snapshot(1, 1, final=True, state_dict={})


def svd_predictor(ratings: Ratings, rows: np.ndarray, rank: int, seed: int, damping: float = 5.0):
    u, i, r = ratings.users[rows], ratings.items[rows], ratings.values[rows]
    mean = r.mean()
    item_bias = np.bincount(i, r - mean, ratings.n_items) / (
        np.bincount(i, minlength=ratings.n_items) + damping
    )
    rest = r - mean - item_bias[i]
    user_bias = np.bincount(u, rest, ratings.n_users) / (np.bincount(u, minlength=ratings.n_users) + damping)
    residual = sparse.csr_matrix((rest - user_bias[u], (u, i)), shape=(ratings.n_users, ratings.n_items))
    rank = max(1, min(rank, min(residual.shape) - 1))
    svd = TruncatedSVD(rank, random_state=seed).fit(residual)
    users_low = svd.transform(residual)  # (users, rank): U Σ
    items_low = svd.components_.T  # (items, rank): V

    def predict(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        taste = (users_low[users] * items_low[items]).sum(1)
        return mean + user_bias[users] + item_bias[items] + taste

    return predict


# ---------------------------------------------------------------- after training


def load(cfg: Config, ratings: Ratings, state_dict: dict) -> DotProduct:
    model = DotProduct(ratings.n_users, ratings.n_items, cfg.factors, 0.0)
    model.load_state_dict(state_dict)
    return model.eval()


@torch.no_grad()
def recommend(
    model: DotProduct, ratings: Ratings, user: int, train_rows: np.ndarray, top: int = 10
) -> list[dict]:
    """The user's best-scored unseen items, each score split into its bias part (mean, user
    and item biases) and its taste part (the dot product)."""
    seen = ratings.items[train_rows][ratings.users[train_rows] == user]
    items = torch.arange(ratings.n_items)
    bias, taste = model.parts(torch.full_like(items, user), items)
    score = bias + taste
    score[torch.from_numpy(seen)] = -math.inf
    best = score.topk(min(top, ratings.n_items - len(seen))).indices.tolist()
    return [
        {
            "item": ratings.titles[k],
            "genre": str(ratings.genre[k]),
            "bias": float(bias[k]),
            "taste": float(taste[k]),
            "score": float(bias[k] + taste[k]),
        }
        for k in best
    ]


def user_genres(ratings: Ratings, user: int, train_rows: np.ndarray) -> dict[str, float]:
    """The user's mean training rating per genre (what the page shows beside the picks)."""
    mine = train_rows[ratings.users[train_rows] == user]
    out = {}
    for g in np.unique(ratings.genre):
        rated = ratings.values[mine][ratings.genre[ratings.items[mine]] == g]
        if len(rated):
            out[str(g)] = float(rated.mean())
    return out


# ---------------------------------------------------------------- questions


def _val(view, variant: str) -> float:
    return view.last(metric(VARIANTS[variant], "val RMSE"), math.inf)


def _factors_help(view) -> tuple[str, str]:
    dot, biases = _val(view, "dot"), _val(view, "biases")
    answer = "yes, by more than 0.05 stars" if biases - dot > 0.05 else "hardly"
    return answer, f"Validation RMSE: dot product {dot:.3f}, biases only {biases:.3f}."


def _gap(view) -> tuple[str, str]:
    train, val = (view.last(metric(VARIANTS["dot"], m)) for m in ("train RMSE", "val RMSE"))
    if train is None or val is None:
        return "–", "The run ended before it measured anything."
    answer = "more than 0.3 stars apart" if val - train > 0.3 else "less than 0.3 stars apart"
    return answer, f"RMSE on the training ratings {train:.3f}, on held-out ratings {val:.3f}."


QUESTIONS = [
    Question(
        "Every rating here comes from a user's taste for 5 hidden genres. Do 8 learned factors "
        "per user and item beat the biases alone on held-out ratings?",
        ("yes, by more than 0.05 stars", "hardly"),
        {"data": "generated", "variants": ("dot", "biases"), "factors": 8, "weight_decay": 0.02},
        _factors_help,
        "The biases know who rates high and what is liked by all; only the factors can learn that "
        "this user likes horror and that film is one.",
    ),
    Question(
        "Now 64 factors and no weight decay, for 60 epochs. How far apart will the RMSE on the "
        "training ratings and on held-out ratings end?",
        ("more than 0.3 stars apart", "less than 0.3 stars apart"),
        {"data": "generated", "variants": ("dot",), "factors": 64, "weight_decay": 0.0, "epochs": 60},
        _gap,
        "64 numbers per user, from about 32 ratings each: with nothing holding them back the "
        "vectors grow to fit every rating's noise. With the default 8 factors and weight decay "
        "0.1 the two stay about 0.15 apart, and the held-out error is lower.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
