"""Many small nets of one shape trained as one: parameters stacked along a leading member
dimension, each member with its own data, seed and hyper-parameters (when a class presses
Train together, same-shaped runs share one loop instead of paying Python's per-operation
overhead once per learner).

Stacks train in double precision. A batched matrix product sums in another order than a lone
one, and in another again when the number of members changes, which moves a float32 weight's
last bit; a playground run is chaotic enough that such a difference grows to 5% of the final
loss over its ~2000 steps (measured: seed 3, learning rate 0.03, 150 epochs). In float64 the
same differences start near 1e-16 and stay far below 1e-5 (tests/test_stacked.py), so a
member's run is its run alone, whatever else the stack holds; tiny nets cost about the same in
either precision, their time being Python's and PyTorch's overhead per operation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DTYPE = torch.float64
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults
MOMENTUM = {"sgd": 0.0, "momentum": 0.9}


def stack_params(models: list[nn.Module]) -> dict[str, torch.Tensor]:
    """Each parameter of `models` (one shape) stacked along a new first dimension, in DTYPE:
    name -> (members, ...), a leaf that requires grad."""
    by_model = [dict(m.named_parameters()) for m in models]
    return {
        name: torch.stack([p[name].detach() for p in by_model]).to(DTYPE).requires_grad_(True)
        for name in by_model[0]
    }


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Every member's nn.Linear at once: x (M, B, in), weight (M, out, in), bias (M, out) ->
    (M, B, out)."""
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def add_penalty_grads(
    grads: dict[str, torch.Tensor],
    params: dict[str, torch.Tensor],
    weights: list[str],
    l1: list[float],
    l2: list[float],
) -> None:
    """Add each member's L1 and L2 penalty's gradient (its own rates, 0 for none) to the
    gradients of the stacked `weights`: rate * sign(w) and 2 * rate * w, as autograd's."""
    for rates, power in ((l1, 1), (l2, 2)):
        if not any(rates):
            continue
        rate = torch.as_tensor(rates, dtype=DTYPE, device=params[weights[0]].device)
        for name in weights:
            w = params[name].detach()
            column = rate.view(-1, *[1] * (w.dim() - 1))
            grads[name] = grads[name] + (column * w.sign() if power == 1 else column * (2 * w))


class StackedOptimizer:
    """torch.optim's Adam, and SGD with or without momentum, for stacked parameters: each member
    with its own learning rate and its own step count (a member that joins later is at an
    earlier step), with torch's update rules.

    It holds the stack's parameters: one (members, P) tensor, each parameter (`params`) a view
    of its columns, so that a step is a dozen operations on one tensor however many layers the
    net has (a tiny net's step is Python's and PyTorch's overhead per operation)."""

    def __init__(self, params: dict[str, torch.Tensor], kind: str, learning_rates: list[float]):
        if kind != "adam" and kind not in MOMENTUM:
            raise ValueError(f"no stacked optimizer {kind!r}")
        self.kind = kind
        self.shapes = {name: tuple(p.shape[1:]) for name, p in params.items()}
        self.flat = _flattened(params)
        device = self.flat.device
        self.learning_rates = torch.as_tensor(learning_rates, dtype=DTYPE, device=device)
        self.steps = torch.zeros_like(self.learning_rates)
        count = 2 if kind == "adam" else int(MOMENTUM[kind] > 0)
        self.moments = [torch.zeros_like(self.flat) for _ in range(count)]
        self.params = self._views()

    def _views(self) -> dict[str, torch.Tensor]:
        """Each parameter as a view of its columns of `flat`: a leaf autograd can differentiate
        by, which every update of `flat` updates."""
        views, at = {}, 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            view = self.flat[:, at : at + size].view(self.flat.shape[0], *shape)
            views[name], at = view.requires_grad_(True), at + size
        return views

    def add_members(self, params: dict[str, torch.Tensor], learning_rates: list[float]) -> None:
        """Members appended to the stack (`params`: their rows of each parameter): they start at
        step 0, with empty moments."""
        new = _flattened(params)
        rates = torch.as_tensor(learning_rates, dtype=DTYPE, device=self.flat.device)
        self.flat = torch.cat([self.flat, new])
        self.learning_rates = torch.cat([self.learning_rates, rates])
        self.steps = torch.cat([self.steps, torch.zeros_like(rates)])
        self.moments = [torch.cat([m, torch.zeros_like(new)]) for m in self.moments]
        self.params = self._views()

    def keep_members(self, rows: torch.Tensor) -> None:
        """Only the members at `rows` stay."""
        self.flat, self.learning_rates, self.steps = (
            self.flat[rows],
            self.learning_rates[rows],
            self.steps[rows],
        )
        self.moments = [m[rows] for m in self.moments]
        self.params = self._views()

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor]) -> None:
        """One update of every member, torch's rules with each member's own rate and step
        count, on every parameter at once."""
        self.steps += 1
        grad = torch.cat([grads[name].reshape(self.flat.shape[0], -1) for name in self.shapes], 1)
        if self.kind == "adam":
            self._adam(grad)
        else:
            self._sgd(grad)

    def _adam(self, grad: torch.Tensor) -> None:
        beta1, beta2 = ADAM_BETAS
        exp_avg, exp_avg_sq = self.moments
        step_size = (self.learning_rates / (1 - beta1**self.steps)).unsqueeze(1)  # (M, 1)
        correction2 = (1 - beta2**self.steps).sqrt().unsqueeze(1)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / correction2).add_(ADAM_EPS)
        self.flat.addcdiv_(exp_avg * step_size, denom, value=-1)

    def _sgd(self, grad: torch.Tensor) -> None:
        update = grad
        if self.moments:
            # torch starts the buffer as a copy of the first gradient, which 0 * momentum + grad
            # is: a zero buffer serves a member at any step
            update = self.moments[0].mul_(MOMENTUM[self.kind]).add_(grad)
        self.flat.sub_(update * self.learning_rates.unsqueeze(1))


def _flattened(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Stacked parameters side by side: (members, P), in DTYPE."""
    return torch.cat([p.detach().reshape(p.shape[0], -1) for p in params.values()], 1).to(DTYPE)


@torch.no_grad()
def layer_stats_together(
    acts: dict[str, torch.Tensor], grads: dict[str, list[torch.Tensor]], hist_range: tuple[float, float]
) -> list[dict[str, dict]]:
    """labs/core/hooks.py layer_stats for D members at once: acts {layer: (D, N, units)}, grads
    {layer: the gradients (D, ...) of the layer's own parameters} -> one stats dict per member.
    Every statistic of every member is computed in one pass per layer and read back in one
    copy, where a member at a time costs ~10 small operations and reads per layer."""
    from labs.core.hooks import HIST_BINS, NEAR_ZERO

    lo, hi = hist_range
    per_layer = {}
    for name, a in acts.items():
        a = a.float()
        d = a.shape[0]
        flat = a.reshape(d, -1)
        # torch.histc's bins: [lo, hi] in HIST_BINS equal parts, the top edge in the last bin
        # ... and a NaN in no bin (a blown-up net's activations)
        bins = (
            ((flat.clamp(lo, hi).nan_to_num(lo) - lo) * (HIST_BINS / (hi - lo)))
            .long()
            .clamp(max=HIST_BINS - 1)
        )
        counts = torch.zeros(d, HIST_BINS, device=a.device).scatter_add_(1, bins, (~flat.isnan()).float())
        dead = (a.std(dim=1) < 1e-3).float().mean(1) if a.shape[1] > 1 else torch.zeros(d, device=a.device)
        g = torch.cat([t.reshape(d, -1).float() for t in grads.get(name, [])] or [a.new_zeros(d, 0)], dim=1)
        g_norm = g.norm(dim=1)
        numbers = torch.stack(
            [
                flat.mean(1),
                flat.std(1) if flat.shape[1] > 1 else torch.zeros(d, device=a.device),
                (flat.abs() < NEAR_ZERO).float().mean(1),
                dead,
                g_norm,
                g_norm / max(g.shape[1], 1) ** 0.5,
            ],
            dim=1,
        )
        per_layer[name] = (numbers.cpu().tolist(), (counts / flat.shape[1]).cpu().numpy())
    keys = ("act_mean", "act_std", "near_zero", "dead", "grad_norm", "grad_rms")
    return [
        {
            name: dict(zip(keys, numbers[i]))
            | {"hist": hist[i].astype("float32"), "hist_range": (float(lo), float(hi))}
            for name, (numbers, hist) in per_layer.items()
        }
        for i in range(len(next(iter(per_layer.values()))[0]))
    ]
