"""Attribution helpers over `captum.attr`: a model and inputs in, NumPy arrays out.

Maps stay signed (absolute-value maps mostly copy the input and fail sanity checks), the model
is put in eval mode first (BatchNorm statistics must not move), and `normalize_attribution`
reproduces Captum's own visualization scaling so plotly can draw what Captum would.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency
from torch import nn


@contextmanager
def evaluating(model: nn.Module):
    """Eval mode for the duration, then back to whatever mode the model was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int | None,
    baseline: torch.Tensor | None = None,
    steps: int = 64,
):
    """IG of `target` for a batch of one: (attributions like x[0], convergence delta).

    Completeness: attributions sum to f(x) - f(baseline) up to the returned delta.
    """
    with evaluating(model):
        ig = IntegratedGradients(model)
        attr, delta = ig.attribute(
            x,
            baselines=baseline if baseline is not None else 0 * x,
            target=target,
            n_steps=steps,
            return_convergence_delta=True,
        )
    return attr[0].detach().cpu().numpy(), float(delta.abs().max())


def saliency(model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """Signed input gradient of the target score (Saliency with abs=False)."""
    with evaluating(model):
        attr = Saliency(model).attribute(x, target=target, abs=False)
    return attr[0].detach().cpu().numpy()


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    window: int,
    stride: int,
) -> np.ndarray:
    """How much the target score drops when each window of pixels is set to zero."""
    shape = (x.shape[1], window, window)
    with evaluating(model), torch.no_grad():
        attr = Occlusion(model).attribute(
            x, target=target, sliding_window_shapes=shape, strides=(x.shape[1], stride, stride), baselines=0
        )
    return attr[0].detach().cpu().numpy()


def occlude_steps(model: nn.Module, x: torch.Tensor, target: int, baseline: torch.Tensor) -> np.ndarray:
    """For a sequence (1, time, channels): how much the target score drops when one time step at
    a time is replaced by the baseline's. Exact for each step, blind to interactions between them."""
    window = (1, x.shape[2])
    with evaluating(model), torch.no_grad():
        attr = Occlusion(model).attribute(
            x, target=target, sliding_window_shapes=window, strides=window, baselines=baseline
        )
    return attr[0].sum(-1).detach().cpu().numpy()


def grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """Grad-CAM on `layer`, signed (no ReLU), upsampled to the input's height and width."""
    with evaluating(model):
        cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=False)
        up = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return up[0].detach().cpu().numpy()


# ---------------------------------------------------------------- Captum's visual scaling


def _cumulative_sum_threshold(values: np.ndarray, percentile: float) -> float:
    """The value below which `percentile`% of the total mass lies (Captum's outlier cut)."""
    sorted_vals = np.sort(values.flatten())
    cum_sums = np.cumsum(sorted_vals)
    return float(sorted_vals[np.where(cum_sums >= cum_sums[-1] * 0.01 * percentile)[0][0]])


def normalize_attribution(
    attr: np.ndarray, sign: str = "all", outlier_perc: float = 2, reduce_channels: bool = True
) -> np.ndarray:
    """Scale to [-1, 1] the way `captum.attr.visualization` does before drawing.

    sign: "all" keeps both signs, "positive"/"negative" keep one, "absolute_value" drops it.
    The top `outlier_perc`% of attribution mass saturates, so one hot pixel cannot wash out
    the map. Channels (axis 0 of a (C, H, W) map) are summed first, as Captum does.
    """
    combined = attr.sum(axis=0) if reduce_channels and attr.ndim == 3 else attr
    if sign == "all":
        threshold = _cumulative_sum_threshold(np.abs(combined), 100 - outlier_perc)
    elif sign == "positive":
        combined = (combined > 0) * combined
        threshold = _cumulative_sum_threshold(combined, 100 - outlier_perc)
    elif sign == "negative":
        combined = (combined < 0) * combined
        threshold = -_cumulative_sum_threshold(np.abs(combined), 100 - outlier_perc)
    elif sign == "absolute_value":
        combined = np.abs(combined)
        threshold = _cumulative_sum_threshold(combined, 100 - outlier_perc)
    else:
        raise ValueError(f"sign must be all, positive, negative or absolute_value, not {sign!r}")
    if abs(threshold) < 1e-5:  # an all-zero map: nothing to scale (Captum warns here)
        return np.zeros_like(combined, dtype=np.float32)
    return np.clip(combined / threshold, -1, 1).astype(np.float32)


# ---------------------------------------------------------------- many methods, many images

METHODS = (
    "Saliency",
    "Integrated Gradients",
    "SmoothGrad",
    "DeepLift",
    "GradientShap",
    "Guided Backprop",
    "Occlusion",
    "Grad-CAM",
)
BASELINES = ("black", "blurred", "uniform noise")


def baseline_images(x: torch.Tensor, kind: str, seed: int = 0) -> torch.Tensor:
    """What "absence of the digit" means for IG, DeepLift and GradientShap, like x (N, C, H, W):
    black (zeros), the image blurred until its strokes are gone, or seeded uniform noise."""
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "blurred":
        from torchvision.transforms.functional import gaussian_blur

        side = x.shape[-1]
        kernel = side // 2 * 2 + 1  # odd, about the image's size: strokes smear into a haze
        return gaussian_blur(x, [kernel, kernel], [side / 5, side / 5])
    if kind == "uniform noise":
        g = torch.Generator().manual_seed(seed)
        return torch.rand(x.shape, generator=g).to(x) * float(x.max())
    raise ValueError(f"baseline must be one of {BASELINES}, not {kind!r}")


def attribute(
    method: str,
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    baseline: torch.Tensor,
    last_conv_act: nn.Module | None = None,
    ig_steps: int = 32,
    noise: float = 0.15,
    samples: int = 16,
) -> torch.Tensor:
    """One method's signed attributions for a batch x (N, C, H, W) and targets (N,), summed
    over channels: (N, H, W). `last_conv_act` is the layer Grad-CAM reads (its ReLU module).

    The random methods (SmoothGrad, GradientShap) draw from torch's generator: seed it first
    for maps that repeat."""
    from captum.attr import DeepLift, GradientShap, GuidedBackprop, NoiseTunnel

    with evaluating(model), warnings.catch_warnings():
        # "required_grads has been set", "hooks on ReLU": Captum narrating what it does
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
        if method == "Saliency":
            attr = Saliency(model).attribute(x, target=target, abs=False)
        elif method == "Integrated Gradients":
            attr = IntegratedGradients(model).attribute(x, baseline, target=target, n_steps=ig_steps)
        elif method == "SmoothGrad":
            tunnel = NoiseTunnel(Saliency(model))
            spread = noise * float(x.max() - x.min())  # σ as a share of the input's range
            attr = tunnel.attribute(
                x, nt_type="smoothgrad", nt_samples=samples, stdevs=spread, target=target, abs=False
            )
        elif method == "DeepLift":
            attr = DeepLift(model).attribute(x, baseline, target=target)
        elif method == "GradientShap":
            # a distribution of baselines: the chosen one and noisy versions of it
            spread = torch.cat([baseline[:1], baseline[:1] + 0.1 * torch.randn(7, *x.shape[1:]).to(x)])
            attr = GradientShap(model).attribute(x, spread, n_samples=samples, stdevs=0.09, target=target)
        elif method == "Guided Backprop":
            attr = GuidedBackprop(model).attribute(x, target=target)
        elif method == "Occlusion":
            window = max(2, x.shape[-1] // 7)
            with torch.no_grad():
                attr = Occlusion(model).attribute(
                    x,
                    target=target,
                    sliding_window_shapes=(x.shape[1], window, window),
                    strides=(x.shape[1], max(1, window // 2), max(1, window // 2)),
                    baselines=0,
                    perturbations_per_eval=64,
                )
        elif method == "Grad-CAM":
            if last_conv_act is None:
                raise ValueError("Grad-CAM needs a convolutional layer")
            cam = LayerGradCam(model, last_conv_act).attribute(x, target=target, relu_attributions=False)
            attr = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        else:
            raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    return attr.detach().sum(1)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ between two maps, signs kept. Absolute-value maps would mostly agree
    because both copy the digit's outline: the trap "Sanity Checks for Saliency Maps" names."""
    from scipy.stats import rankdata  # ties (a map's many zeros) share their mean rank

    ra, rb = (rankdata(m.ravel()) for m in (a, b))
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0
