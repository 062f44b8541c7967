"""Chapter 2, one point explained: why the net predicts what it does at a point a learner picked
(Integrated Gradients over its input features), and what its logits, probabilities and the
loss's gradient on each logit are there. The page draws them from the trained weights."""

from __future__ import annotations

import numpy as np
import torch

from labs.core import attribution
from labs.playground import FEATURES, Config, PlaygroundNet, featurize, objective, probabilities


def explain_point(model: PlaygroundNet, cfg: Config, point: tuple[float, float]) -> dict:
    """Integrated Gradients over the input features of one point's logit: the class-1 logit
    with one output, else the logit of the class the net picks there.

    The baseline is all features at 0 (the centre of the plane), so the attributions sum to
    logit(point) - logit(baseline) up to `delta`.
    """
    x = featurize(torch.tensor([point], dtype=torch.float32), cfg.features)  # (1, features)
    with torch.no_grad():
        logits, base = model(x)[0], model(torch.zeros_like(x))[0]
    target = 0 if len(logits) == 1 else int(logits.argmax())
    attr, delta = attribution.integrated_gradients(model, x, target=target)
    return {
        "features": [FEATURES[f][0] for f in cfg.features],
        "values": x[0].numpy(),
        "attributions": attr,
        "delta": delta,
        "logit": logits[target].item(),
        "baseline_logit": base[target].item(),
        "class": 1 if len(logits) == 1 else target,  # whose probability `probability` is
        "probability": probabilities(logits[None])[0, 1 if len(logits) == 1 else target].item(),
    }


def point_outputs(model: PlaygroundNet, cfg: Config, point: tuple[float, float], label: int) -> dict:
    """One point's logits, probabilities and the gradient of its loss with respect to each
    logit, by autograd: with cross-entropy that gradient is p - y (one-hot y), with squared
    error it passes through the softmax's slope and fades where the net is confidently wrong."""
    x = featurize(torch.tensor([point], dtype=torch.float32), cfg.features)
    logits = model(x).detach().requires_grad_(True)  # (1, outputs)
    kind = torch.float32 if logits.shape[1] == 1 else torch.long
    loss = objective(cfg, logits, torch.tensor([label], dtype=kind))
    (gradient,) = torch.autograd.grad(loss, logits)
    return {
        "logits": logits[0].detach().numpy(),
        "probabilities": probabilities(logits.detach())[0].numpy(),
        "gradient": gradient[0].numpy(),
        "loss": loss.item(),
        "label": label,
    }


def label_near(points: dict, point: tuple[float, float]) -> int:
    """The label of the drawn point (training or test) nearest to `point`: what a click picks."""
    X = np.concatenate([points["X_train"], points["X_test"]])
    y = np.concatenate([points["y_train"], points["y_test"]])
    return int(y[np.argmin(((X - np.asarray(point)) ** 2).sum(1))])
