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


def weight_penalty(
    params: dict[str, torch.Tensor], weights: list[str], l1: list[float], l2: list[float]
) -> torch.Tensor | float:
    """Each member's L1 and L2 penalty on the stacked `weights` (its own rates, 0 for none),
    summed over members: a member's gradient is its own penalty's."""
    total: torch.Tensor | float = 0.0
    for rates, power in ((l1, 1), (l2, 2)):
        if not any(rates):
            continue
        rate = torch.as_tensor(rates, dtype=DTYPE, device=params[weights[0]].device)
        for name in weights:
            total = total + (rate * params[name].abs().pow(power).flatten(1).sum(1)).sum()
    return total


class StackedOptimizer:
    """torch.optim's Adam, and SGD with or without momentum, for stacked parameters: each member
    with its own learning rate and its own step count (a member that joins later is at an
    earlier step), with torch's update rules."""

    def __init__(self, params: dict[str, torch.Tensor], kind: str, learning_rates: list[float]):
        if kind != "adam" and kind not in MOMENTUM:
            raise ValueError(f"no stacked optimizer {kind!r}")
        self.params, self.kind = params, kind
        device = next(iter(params.values())).device
        self.learning_rates = torch.as_tensor(learning_rates, dtype=DTYPE, device=device)
        self.steps = torch.zeros_like(self.learning_rates)
        self.state: dict[str, tuple[torch.Tensor, ...]] = {}

    def add_members(self, learning_rates: list[float]) -> None:
        """Members appended to the stack (the caller appended their parameters' rows): they
        start at step 0, with empty moments."""
        new = torch.as_tensor(learning_rates, dtype=DTYPE, device=self.learning_rates.device)
        self.learning_rates = torch.cat([self.learning_rates, new])
        self.steps = torch.cat([self.steps, torch.zeros_like(new)])
        for name, moments in self.state.items():
            rows = self.params[name].shape[0] - moments[0].shape[0]
            pad = torch.zeros((rows, *moments[0].shape[1:]), dtype=DTYPE, device=moments[0].device)
            self.state[name] = tuple(torch.cat([m, pad]) for m in moments)

    def keep_members(self, rows: torch.Tensor) -> None:
        """Only the members at `rows` stay (the caller keeps the same rows of the parameters)."""
        self.learning_rates, self.steps = self.learning_rates[rows], self.steps[rows]
        self.state = {name: tuple(m[rows] for m in moments) for name, moments in self.state.items()}

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor]) -> None:
        """One update of every member, torch's rules with each member's own rate and step
        count; every parameter at once (torch's `_foreach` calls, as torch.optim's foreach
        implementations), so a step costs a few calls, not a few per parameter."""
        self.steps += 1
        names = list(self.params)
        params, grad = [self.params[n] for n in names], [grads[n] for n in names]
        per_member = [_column(p) for p in params]  # how a (M,) value broadcasts on each
        if self.kind == "adam":
            self._adam(names, params, grad, per_member)
        else:
            self._sgd(names, params, grad, per_member)

    def _moments(self, names: list[str], params: list[torch.Tensor], count: int) -> list[tuple]:
        for name, param in zip(names, params):
            if name not in self.state:
                self.state[name] = tuple(torch.zeros_like(param) for _ in range(count))
        return [self.state[name] for name in names]

    def _adam(self, names, params, grad, per_member) -> None:
        beta1, beta2 = ADAM_BETAS
        step_size = -self.learning_rates / (1 - beta1**self.steps)  # (M,), per member
        correction2 = (1 - beta2**self.steps).sqrt()
        exp_avg, exp_avg_sq = (list(m) for m in zip(*self._moments(names, params, 2)))
        torch._foreach_lerp_(exp_avg, grad, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grad, grad, value=1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, [correction2.view(shape) for shape in per_member])
        torch._foreach_add_(denom, ADAM_EPS)
        update = torch._foreach_mul(exp_avg, [step_size.view(shape) for shape in per_member])
        torch._foreach_addcdiv_(params, update, denom)

    def _sgd(self, names, params, grad, per_member) -> None:
        momentum = MOMENTUM[self.kind]
        update = grad
        if momentum:
            # torch starts the buffer as a copy of the first gradient, which 0 * momentum + grad
            # is: a zero buffer serves a member at any step
            update = [m[0] for m in self._moments(names, params, 1)]
            torch._foreach_mul_(update, momentum)
            torch._foreach_add_(update, grad)
        rates = [self.learning_rates.view(shape) for shape in per_member]
        torch._foreach_sub_(params, torch._foreach_mul(update, rates))


def _column(like: torch.Tensor) -> tuple[int, ...]:
    """The shape that broadcasts a (M,) per-member value against a stacked tensor like `like`."""
    return (like.shape[0],) + (1,) * (like.dim() - 1)


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
