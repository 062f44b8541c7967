"""Chapter 10's yardsticks and explanations: scikit-learn baselines on the MLP's own split, what
each feature is worth to them (permutation importance), and to the MLP (Captum)."""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import FeatureAblation, IntegratedGradients
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from labs.tables import Table, split

NATIVE_CATEGORIES = 255  # HistGradientBoosting bins a categorical column into at most 255 levels
EXPLAINED_ROWS = 400  # validation rows the MLP's attributions average over


def feature_matrix(table: Table) -> np.ndarray:
    """Numbers, then category codes: the boosted trees' input, column per feature."""
    columns = [*table.numeric.values(), *(c.astype(np.float32) for c in table.categorical.values())]
    return np.stack(columns, 1)


def _one_hot(table: Table, train: np.ndarray):
    """Standardized numbers beside one 0/1 column per category level (sparse)."""
    num = np.stack(list(table.numeric.values()), 1) if table.numeric else np.zeros((len(table), 0))
    scaled = StandardScaler().fit(num[train]).transform(num) if num.shape[1] else num
    if not table.categorical:
        return sparse.csr_matrix(scaled)
    codes = np.stack(list(table.categorical.values()), 1)
    onehot = OneHotEncoder(handle_unknown="ignore").fit(codes[train]).transform(codes)
    return sparse.hstack([sparse.csr_matrix(scaled), onehot]).tocsr()


def _boosting(table: Table, seed: int):
    """Native categorical splits where a column has at most 255 levels; a store id with more is
    read as a number, which its order does not mean (the honest cost of that limit)."""
    native = [False] * len(table.numeric) + [
        len(table.levels[c]) <= NATIVE_CATEGORIES for c in table.categorical
    ]
    kind = HistGradientBoostingRegressor if table.task == "regression" else HistGradientBoostingClassifier
    return kind(categorical_features=np.array(native, bool) if any(native) else None, random_state=seed)


def fit_baselines(table: Table, seed: int) -> tuple[dict[str, float], dict]:
    """Validation score of each baseline (RMSE or accuracy), and the fitted models."""
    train, val = split(len(table), seed)
    y = table.target
    onehot = _one_hot(table, train)
    linear = Ridge(alpha=1.0) if table.task == "regression" else LogisticRegression(max_iter=500)
    linear.fit(onehot[train], y[train])
    X = feature_matrix(table)
    boosted = _boosting(table, seed).fit(X[train], y[train])
    scores = {
        "linear (one-hot)": _score(linear.predict(onehot[val]), y[val], table.task),
        "gradient boosting": _score(boosted.predict(X[val]), y[val], table.task),
    }
    return scores, {"gradient boosting": boosted}


def _score(pred: np.ndarray, truth: np.ndarray, task: str) -> float:
    if task == "regression":
        return float(np.sqrt(np.mean((pred - truth) ** 2)))
    return float(np.mean(pred == truth))


def permutation_scores(fitted: dict, table: Table, seed: int) -> dict[str, float]:
    """How much the boosted trees' validation score drops when one column is shuffled, as a
    share of all the drops (negative drops count as 0)."""
    _, val = split(len(table), seed)
    X = feature_matrix(table)
    result = permutation_importance(
        fitted["gradient boosting"], X[val], table.target[val], n_repeats=5, random_state=seed, n_jobs=1
    )
    return _shares(dict(zip(table.features, result.importances_mean)))


class _OnEmbedded(torch.nn.Module):
    """The MLP from its embedded input on: numbers and embeddings are all continuous there, so
    a category can be ablated (set to the mean embedding) or integrated along a path."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z):
        out = self.model.head(z)
        return out[:, 0] if out.shape[1] == 1 else out


def attributions(model, data, table: Table) -> dict[str, dict[str, float]]:
    """Mean |attribution| of each feature over validation rows, as shares, by FeatureAblation
    and by Integrated Gradients. The baseline is the average row: numbers at their mean (0 once
    standardized), each category at its mean embedding over the training rows."""
    rows = data.val[:EXPLAINED_ROWS]
    with torch.no_grad():
        z = model.embed(data.numeric[rows], data.codes[rows])
        baseline = model.embed(data.numeric[data.train], data.codes[data.train]).mean(0, keepdim=True)
    baseline[:, : data.numeric.shape[1]] = 0
    mask = torch.zeros(1, z.shape[1], dtype=torch.long, device=z.device)
    at, feature = data.numeric.shape[1], data.numeric.shape[1]
    mask[0, :at] = torch.arange(at)
    for emb in model.embeddings.values():  # one feature per categorical column, all its numbers
        mask[0, at : at + emb.embedding_dim] = feature
        at, feature = at + emb.embedding_dim, feature + 1
    net = _OnEmbedded(model)
    target = None if table.task == "regression" else data.y[rows]
    ablated = FeatureAblation(net).attribute(z, baselines=baseline, target=target, feature_mask=mask)
    integrated = IntegratedGradients(net).attribute(
        z, baselines=baseline.expand_as(z), target=target, n_steps=32
    )
    groups = [mask[0] == f for f in range(len(table.features))]
    # FeatureAblation gives every number of a group the group's whole effect: read one of them;
    # IG splits the effect among them: add them up
    ablation = [ablated[:, g].mean(1).abs().mean().item() for g in groups]
    ig = [integrated[:, g].sum(1).abs().mean().item() for g in groups]
    return {
        "FeatureAblation (MLP)": _shares(dict(zip(table.features, ablation))),
        "Integrated Gradients (MLP)": _shares(dict(zip(table.features, ig))),
    }


def _shares(values: dict[str, float]) -> dict[str, float]:
    clipped = {k: max(float(v), 0.0) for k, v in values.items()}
    total = sum(clipped.values()) or 1.0
    return {k: v / total for k, v in clipped.items()}
