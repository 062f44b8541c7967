"""Chapter 10 — Tabular data & embeddings.

A generated table of daily sales with known structure: 400 stores of four hidden kinds (city,
suburb, beach, village), each kind with its own week (city stores are quiet at the weekend,
beach stores busy, and more so when it is hot), a promo whose lift depends on the kind, the
temperature and the distance to a competitor. About 15 rows per store: too few to learn each
store's week on its own, enough to learn which kind it is.

An MLP reads each categorical column through an embedding (Guo & Berkhahn, 2016): a few learned
numbers per store, trained with the rest of the net. Beside it, on the same split, two
scikit-learn baselines: a linear model on one-hot columns (one weight per store: it can learn
a store's level, never its week) and histogram gradient boosting. After training, which
features the MLP leans on: Captum's FeatureAblation and Integrated Gradients, beside
scikit-learn's permutation importance on the boosted trees. The learner's own CSV works too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from labs.core import budget
from labs.core.config import ConfigError, check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.projection import principal_plane
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict
from labs.tables import Table, split
from labs.tabular_baselines import attributions, fit_baselines, permutation_scores

PREFERS_GPU = False  # a small MLP on a few thousand rows: overhead-bound, as fast on a CPU
DATASETS = {"sales": "generated store sales", "upload": "my CSV upload"}
KINDS = ("city", "suburb", "beach", "village")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# each kind's week, in log-sales: city quiet at the weekend, suburb and beach busy, village flat
WEEKS = np.array(
    [
        [0.25, 0.25, 0.25, 0.25, 0.3, -0.55, -0.65],
        [-0.15, -0.15, -0.1, -0.1, 0.1, 0.55, 0.45],
        [-0.3, -0.3, -0.3, -0.25, 0.0, 0.6, 0.65],
        [0.0, 0.0, 0.0, 0.0, 0.05, 0.1, 0.05],
    ]
)
PROMO_LIFT = np.array([0.15, 0.35, 0.1, 0.45])  # suburb and village shoppers chase offers
SIZE_SPREAD = 0.15
HEAT = np.array([-0.01, 0.0, 0.04, 0.0])  # log-sales per °C above 18: beaches love the sun


@dataclass(frozen=True)
class Config:
    data: str = knob(
        "sales", "Data", "Generated sales, or your own CSV.", choices=tuple(DATASETS), labels=DATASETS
    )
    stores: int = knob(
        400, "Stores", "Distinct store ids (the high-cardinality column).", lo=20, hi=2000, step=20
    )
    rows: int = knob(
        6000, "Rows", "Generated days of sales (80% train, 20% validation).", lo=500, hi=50000, step=500
    )
    embedding: int = knob(
        4, "Embedding size", "Learned numbers per category (per store, per day …).", lo=1, hi=16, step=1
    )
    width: int = knob(64, "Width", "Units in each of the MLP's two hidden layers.", lo=8, hi=256, step=8)
    weight_decay: float = knob(
        0.0, "Weight decay", "AdamW's pull of every weight toward 0.", lo=0.0, hi=0.1, step=0.001
    )
    learning_rate: float = knob(3e-3, "Learning rate", "AdamW's step size.", lo=1e-4, hi=0.1, log=True)
    batch_size: int = knob(128, "Batch size", "Rows per step.", lo=16, hi=2048, step=16)
    epochs: int = knob(30, "Epochs", "Passes over the training rows.", lo=1, hi=500, step=1)
    seed: int = knob(0, "Seed", "Same seed, same table, same split, same run.", lo=0, hi=9999, step=1)


# ---------------------------------------------------------------- the generated table


@lru_cache(maxsize=4)
def sales(stores: int, rows: int, seed: int) -> Table:
    """Daily sales (k€) of `stores` stores; the hidden kind of each store travels along as
    `groups` (for colouring the map and the lesson), never as a feature."""
    rng = np.random.default_rng((seed, 10))
    kind = rng.integers(0, len(KINDS), stores)
    size = rng.normal(0, SIZE_SPREAD, stores)  # each store's own level, on top of its kind's
    competitor = rng.uniform(0.2, 15, stores).round(1)  # km, fixed per store
    store = rng.integers(0, stores, rows)
    day = rng.integers(0, 7, rows)
    promo = (rng.random(rows) < 0.3).astype(np.int64)
    temperature = (18 + 8 * rng.standard_normal(rows)).round(1)
    k = kind[store]
    log_sales = (
        2.0
        + size[store]
        + WEEKS[k, day]
        + PROMO_LIFT[k] * promo
        + HEAT[k] * (temperature - 18)
        + 0.12 * np.log(competitor[store])
        + rng.normal(0, 0.1, rows)
    )
    return Table(
        "sales",
        numeric={
            "temperature": temperature.astype(np.float32),
            "competitor_km": competitor[store].astype(np.float32),
        },
        categorical={"store": store, "day": day, "promo": promo},
        levels={"store": [f"store {i}" for i in range(stores)], "day": list(DAYS), "promo": ["no", "yes"]},
        target=np.exp(log_sales).astype(np.float32),
        target_name="sales",
        groups={"store": np.array(KINDS)[kind], "day": np.array(["weekday"] * 5 + ["weekend"] * 2)},
    )


def table_for(cfg: Config, upload: Table | None) -> Table:
    if cfg.data == "upload":
        if upload is None:
            raise ConfigError("Upload a CSV first (or choose the generated sales).")
        return upload
    return sales(cfg.stores, cfg.rows, cfg.seed)


# ---------------------------------------------------------------- the net


def embedding_size(levels: int, cap: int) -> int:
    """No more numbers than categories need (a yes/no column gets 1 or 2), at most `cap`."""
    return max(1, min(cap, levels - 1 if levels <= 3 else cap))


class EmbeddingMLP(nn.Module):
    """Each categorical column through its own embedding, concatenated with the standardized
    numbers, then two hidden layers. `embedded` is the concatenation Captum attributes."""

    def __init__(self, n_numeric: int, levels: dict[str, int], dim: int, width: int, outputs: int):
        super().__init__()
        self.embeddings = nn.ModuleDict(
            {c: nn.Embedding(n, embedding_size(n, dim)) for c, n in levels.items()}
        )
        for emb in self.embeddings.values():  # small at first: where a category ends up is learned, not drawn
            nn.init.normal_(emb.weight, std=0.05)
        inputs = n_numeric + sum(e.embedding_dim for e in self.embeddings.values())
        self.head = nn.Sequential(
            nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, outputs)
        )

    def embed(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        parts = [numeric] + [e(codes[:, i]) for i, e in enumerate(self.embeddings.values())]
        return torch.cat(parts, 1)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(numeric, codes))


@dataclass
class Prepared:
    """One table as tensors, standardized with the training rows' statistics."""

    numeric: torch.Tensor  # (rows, n_numeric)
    codes: torch.Tensor  # (rows, n_categorical)
    y: torch.Tensor  # standardized float (regression) or class indices
    train: torch.Tensor
    val: torch.Tensor
    y_mean: float
    y_std: float


def prepare(table: Table, seed: int, device: torch.device) -> Prepared:
    train, val = split(len(table), seed)
    num = (
        np.stack(list(table.numeric.values()), 1) if table.numeric else np.zeros((len(table), 0), np.float32)
    )
    mu, sd = num[train].mean(0), num[train].std(0) + 1e-6
    codes = (
        np.stack(list(table.categorical.values()), 1)
        if table.categorical
        else np.zeros((len(table), 0), np.int64)
    )
    y = torch.from_numpy(table.target)
    y_mean, y_std = 0.0, 1.0
    if table.task == "regression":
        y_mean, y_std = float(table.target[train].mean()), float(table.target[train].std() + 1e-6)
        y = (y - y_mean) / y_std
    return Prepared(
        torch.from_numpy((num - mu) / sd).float().to(device),
        torch.from_numpy(codes).to(device),
        y.to(device),
        torch.from_numpy(train).to(device),
        torch.from_numpy(val).to(device),
        y_mean,
        y_std,
    )


def build(table: Table, cfg: Config) -> EmbeddingMLP:
    outputs = 1 if table.classes is None else len(table.classes)
    levels = {c: len(table.levels[c]) for c in table.categorical}
    return EmbeddingMLP(len(table.numeric), levels, cfg.embedding, cfg.width, outputs)


def loss_of(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    return F.mse_loss(out[:, 0], y) if task == "regression" else F.cross_entropy(out, y)


def score_name(table: Table) -> str:
    return "val RMSE" if table.task == "regression" else "val accuracy"


@torch.no_grad()
def score(model: EmbeddingMLP, data: Prepared, rows: torch.Tensor, task: str) -> float:
    """RMSE in the target's own units, or accuracy."""
    model.eval()
    out = model(data.numeric[rows], data.codes[rows])
    model.train()
    if task == "regression":
        return float(((out[:, 0] - data.y[rows]) ** 2).mean().sqrt()) * data.y_std
    return float((out.argmax(1) == data.y[rows]).float().mean())


def embedding_maps(model: EmbeddingMLP) -> dict[str, np.ndarray]:
    """Each categorical column's embedding on its principal plane."""
    return {
        col: principal_plane(emb.weight.detach().float().cpu().numpy())
        for col, emb in model.embeddings.items()
    }


def cost(cfg: Config) -> budget.Cost:
    rows = cfg.rows if cfg.data == "sales" else 100_000
    inputs = 2 + 3 * cfg.embedding
    params = cfg.stores * cfg.embedding + inputs * cfg.width + cfg.width**2 + cfg.width
    steps_total = math.ceil(0.8 * rows / cfg.batch_size) * cfg.epochs
    return budget.Cost(
        params,
        cfg.batch_size * (inputs + 4 * cfg.width),
        steps_total,
        6 * params * cfg.batch_size,
        40,
        data=rows * 8,
    )


# ---------------------------------------------------------------- training


def train(cfg: Config, device: torch.device, upload: Table | None = None):
    """AdamW on mini-batches of rows; the baselines are fitted once, after the first update, on
    the same split; the last snapshot adds what each model leans on."""
    check(cfg)
    table = table_for(cfg, upload)
    g = seed_everything(cfg.seed)
    data = prepare(table, cfg.seed, device)
    model = build(table, cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    total = per_epoch * cfg.epochs
    cadence = Cadence(total, max_snaps=120, min_seconds=0.2)
    name = score_name(table)
    view = {
        "levels": table.levels,
        "groups": {c: g_.tolist() for c, g_ in (table.groups or {}).items()},
        "task": table.task,
        "target": table.target_name,
    }
    notes = [
        f"{table.name}: {len(data.train):,} training rows, {len(data.val):,} validation rows; "
        f"{len(table.numeric)} numeric and {len(table.categorical)} categorical features "
        f"({', '.join(f'{c}: {len(table.levels[c])}' for c in table.categorical) or 'none'}); {table.task}."
    ]
    baselines: dict[str, float] = {}
    step, order = 0, torch.empty(0, dtype=torch.long)
    watch = LossWatch()
    for step in steps(total):
        at = (step - 1) % per_epoch
        if at == 0:
            order = data.train[torch.randperm(len(data.train), generator=g).to(device)]
        rows = order[at * cfg.batch_size : (at + 1) * cfg.batch_size]
        loss = loss_of(model(data.numeric[rows], data.codes[rows]), data.y[rows], table.task)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log(step, train_loss=loss)
        if cadence.due(step):
            watch.check(step, loss=loss)
            metrics = {
                f"MLP + embeddings: {name}": score(model, data, data.val, table.task),
                "epoch": step / per_epoch,
            }
            metrics.update({f"{b}: {name}": v for b, v in baselines.items()})
            snap = Snapshot(step, total, metrics, view={**view, "maps": embedding_maps(model)}, notes=notes)
            yield snap
            view, notes = {}, []
            if not baselines:  # after the first update, so it comes at once: ~1 s of fitting
                baselines, fitted = fit_baselines(table, cfg.seed)
                view["baseline_models"] = list(baselines)
    view = {"embeddings": {c: e.weight.detach().cpu().numpy() for c, e in model.embeddings.items()}}
    if baselines:
        view["importance"] = {
            **attributions(model.eval(), data, table),
            "permutation (gradient boosting)": permutation_scores(fitted, table, cfg.seed),
        }
    yield Snapshot(step, total, view=view)
    yield Snapshot(step, total, final=True, state_dict=cpu_state_dict(model))


# ---------------------------------------------------------------- questions


def _last(view, model: str) -> float:
    return view.last(f"{model}: val RMSE", math.inf)


def _embedding_or_one_hot(view) -> tuple[str, str]:
    mlp, linear = _last(view, "MLP + embeddings"), _last(view, "linear (one-hot)")
    answer = "the MLP with embeddings" if mlp < linear else "the linear model on one-hot columns"
    return answer, f"Validation RMSE: MLP with embeddings {mlp:.3f}, linear on one-hot {linear:.3f} (k€)."


def nearest_day(embeddings: np.ndarray, day: int) -> int:
    distances = np.linalg.norm(embeddings - embeddings[day], axis=1)
    distances[day] = np.inf
    return int(distances.argmin())


def _saturday_neighbour(view) -> tuple[str, str]:
    days = view.view.get("embeddings", {}).get("day")
    if days is None:
        return "–", "The run ended before its embeddings were kept."
    near = DAYS[nearest_day(days, DAYS.index("Sat"))]
    answer = {"Sun": "Sunday", "Fri": "Friday"}.get(near, "another weekday")
    return answer, f"Nearest to Saturday in the learned day embedding: {near}."


QUESTIONS = [
    Question(
        "400 stores, about 12 training rows each. On validation days, which predicts sales better: "
        "an MLP that learns 4 numbers per store, or a linear model with one weight per store?",
        ("the MLP with embeddings", "the linear model on one-hot columns"),
        {"data": "sales", "stores": 400},
        _embedding_or_one_hot,
        "One weight per store learns its level, never its week: the linear model adds the same "
        "Saturday to a city store as to a beach store. The embedding puts stores of one kind "
        "together, so every city store's rows teach the net the city week.",
    ),
    Question(
        "The net is never told which days are the weekend. Which day will it place nearest to Saturday?",
        ("Sunday", "Friday", "another weekday"),
        {"data": "sales"},
        _saturday_neighbour,
        "A day's embedding is where gradient descent put it to predict sales; days that move "
        "sales the same way in every kind of store end up close together.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
