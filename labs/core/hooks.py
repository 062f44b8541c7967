"""Forward hooks that record what each layer does, as context managers that always clean up.

`record_activations` keeps the latest output of each named module; `layer_stats` turns those
outputs and the modules' weight gradients into plain per-layer statistics (fastai's
ActivationStats: mean, std, fraction near zero, a histogram; plus gradient norm and the
fraction of dead units).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

HIST_BINS = 40
NEAR_ZERO = 1e-2  # |a| below this counts as "near zero" (fastai uses a similar cut)


@contextmanager
def record_activations(modules: dict[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict that always holds each module's latest output; hooks removed on any exit."""
    latest: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(_keeper(latest, name)))
        yield latest
    finally:
        for handle in handles:
            handle.remove()


def _keeper(latest: dict, name: str):
    def hook(module, inputs, output):
        latest[name] = output.detach()

    return hook


def activation_stats(a: torch.Tensor, hist_range: tuple[float, float]) -> dict[str, object]:
    """Mean, std, fraction near zero and a fixed-range histogram of one layer's output."""
    flat = a.float().flatten()
    lo, hi = hist_range
    counts = torch.histc(flat.clamp(lo, hi), bins=HIST_BINS, min=lo, max=hi)
    return {
        "act_mean": float(flat.mean()),
        "act_std": float(flat.std()) if flat.numel() > 1 else 0.0,
        "near_zero": float((flat.abs() < NEAR_ZERO).float().mean()),
        "hist": (counts / max(flat.numel(), 1)).cpu().numpy().astype(np.float32),
        "hist_range": (float(lo), float(hi)),  # the histogram says what its bins span
    }


def dead_fraction(a: torch.Tensor) -> float:
    """Fraction of units whose output barely changes over the whole batch.

    A dead ReLU outputs 0 for every input; a saturated sigmoid outputs ~1. Either way the unit
    carries no information about the input and gets (almost) no gradient.
    """
    per_unit = a.float().transpose(0, 1).reshape(a.shape[1], -1)  # (units, everything else)
    return float((per_unit.std(dim=1) < 1e-3).float().mean()) if per_unit.shape[1] > 1 else 0.0


def grad_norm(module: nn.Module, per_weight: bool = False) -> float:
    """L2 norm of the gradient of the module's own weights (0 before the first backward).

    per_weight: divide by √(number of weights), the root-mean-square gradient. Layers of
    different shapes then compare fairly: a 784-input first layer's norm is otherwise ~5×
    a 32-input layer's for the same per-weight signal."""
    grads = [p.grad.detach().flatten() for p in module.parameters(recurse=False) if p.grad is not None]
    if not grads:
        return 0.0
    flat = torch.cat(grads)
    return float(flat.norm() / (flat.numel() ** 0.5 if per_weight else 1.0))


def layer_stats(
    modules: dict[str, nn.Module],
    latest: dict[str, torch.Tensor],
    grad_modules: dict[str, nn.Module] | None = None,
    hist_range: tuple[float, float] = (-3.0, 3.0),
) -> dict[str, dict]:
    """Plain statistics for every recorded layer: activations from `latest`, gradients of the
    weights in `grad_modules[name]` (the layer feeding that activation)."""
    grad_modules = grad_modules or modules
    stats = {}
    for name, a in latest.items():
        entry = activation_stats(a, hist_range)
        entry["dead"] = dead_fraction(a)
        module = grad_modules.get(name)
        entry["grad_norm"] = grad_norm(module) if module is not None else 0.0
        entry["grad_rms"] = grad_norm(module, per_weight=True) if module is not None else 0.0
        stats[name] = entry
    return stats


def hooks_left(model: nn.Module) -> int:
    """How many forward/backward hooks are still attached anywhere in the model (tests use it)."""
    return sum(
        len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules()
    )
