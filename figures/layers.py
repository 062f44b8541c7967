"""What happens inside, layer by layer: activation histograms over time ("the colorful
dimension", after fastai), gradient norm and dead units per layer, weight histograms."""

from __future__ import annotations

import numpy as np

from figures import plot

GRADIENT_TITLES = {"grad_norm": "gradient norm of the weights", "grad_rms": "gradient per weight (RMS)"}
SHORT_TITLES = {"grad_norm": "gradient norm", "grad_rms": "gradient (RMS)"}  # half a chart wide


def activation_histograms_figure(layer_history: list[tuple[int, dict]], band_height: int = 90) -> dict:
    """One band per layer (first on top): x = training step, y = activation value from the
    bottom of the histogram's range (the bottom of the band) to its top, colour = how many
    units sit there (log scale). Healthy layers show a wide band; collapsing ones a thin line.

    All bands are one heatmap with a gap row between layers: far cheaper to build and to
    draw than one subplot per layer, which matters at every live frame."""
    names = list(layer_history[-1][1]) if layer_history else []
    steps = [s for s, _ in layer_history]
    bands, centers, gap = [], [], None
    for name in reversed(names):  # heatmap rows grow upwards: the first layer goes last
        hist = np.stack([layers[name]["hist"] for _, layers in layer_history], axis=1)  # (bins, T)
        if gap is not None:
            bands.append(gap)
        gap = np.full((1, hist.shape[1]), np.nan)
        centers.append(sum(len(b) for b in bands) + hist.shape[0] / 2)
        bands.append(np.log1p(hist * 1000))
    z = np.concatenate(bands) if bands else np.zeros((1, 1))
    lo, hi = layer_history[-1][1][names[0]]["hist_range"] if names else (0.0, 1.0)
    return plot.figure(
        [plot.heatmap(z, x=steps, showscale=False)],
        f"activations over training (each band: {lo:g} bottom to {hi:g} top)",
        60 + band_height * max(1, len(names)),
        legend=False,
        xaxis={"title": "step"},
        yaxis={"tickvals": centers, "ticktext": list(reversed(names)), "showgrid": False},
    )


def layer_health_figure(layers: dict[str, dict], grad_key: str = "grad_norm") -> dict:
    """Latest gradient norm per layer (log scale) beside the share of dead units, on two
    axes placed by hand."""
    names = list(layers)
    norms = [max(layers[n].get(grad_key, 0.0), 1e-12) for n in names]
    dead = [layers[n]["dead"] for n in names]
    data = [
        plot.bar(names, norms, "#4c78a8", showlegend=False),
        plot.bar(names, dead, "#e45756", showlegend=False, xaxis="x2", yaxis="y2"),
    ]
    notes = plot.subtitles((SHORT_TITLES[grad_key], 0.0), ("dead units", 0.55))
    return plot.figure(
        data,
        "",
        280,
        legend=False,
        xaxis={"domain": [0, 0.45], "type": "category"},
        yaxis=plot.log_axis(norms),
        xaxis2={"domain": [0.55, 1], "anchor": "y2", "type": "category"},
        yaxis2={"range": [0, 1], "tickformat": ".0%", "anchor": "x2"},
        annotations=notes,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )


def gradient_flow_over_time_figure(
    layer_history: list[tuple[int, dict]], grad_key: str = "grad_norm", title: str = "gradient flow"
) -> dict:
    """Each layer's gradient norm over training, log scale: vanishing shows as a spread."""
    names = list(layer_history[-1][1]) if layer_history else []
    steps = [s for s, _ in layer_history]
    data = [
        plot.line(steps, [max(lay[name].get(grad_key, 0.0), 1e-12) for _, lay in layer_history], name)
        for name in names
    ]
    return plot.figure(
        data, title, 280, xaxis={"title": "step"}, yaxis=plot.log_axis(*(t["y"] for t in data))
    )


def gradient_heatmap_figure(
    layer_history: list[tuple[int, dict]],
    grad_key: str = "grad_rms",
    height: int = 320,
    z_range: tuple[float, float] | None = None,
    title: str = "",
) -> dict:
    """Layers (first on top) × steps, colour = log10 of the gradient: for deep nets, where
    one line per layer would be a tangle. Vanishing shows as a dark top."""
    names = list(layer_history[-1][1]) if layer_history else []
    steps = [s for s, _ in layer_history]
    values = [[lay[n].get(grad_key, 0.0) for _, lay in layer_history] for n in names]
    z = np.log10(np.maximum(values, 1e-12)) if names else np.zeros((1, 1))
    trace = plot.heatmap(
        z,
        x=steps,
        y=names,
        colorbar={"title": {"text": "log₁₀"}, "thickness": 12},
        hovertemplate="%{y} at step %{x}: 10^%{z:.1f}<extra></extra>",
    )
    if z_range:  # side-by-side charts share one colour scale
        trace.update(zmin=z_range[0], zmax=z_range[1])
    title = title or f"{GRADIENT_TITLES.get(grad_key, grad_key)} per layer over training"
    return plot.figure(
        [trace], title, height, legend=False, xaxis={"title": "step"}, yaxis={"autorange": "reversed"}
    )


def weight_histograms_figure(
    hists: dict[str, dict[str, np.ndarray]], value_range: tuple[float, float], colors: tuple = ()
) -> dict:
    """All weights of each variant as one histogram (layers pooled, each weighted equally),
    overlaid: weight decay shows as a narrower peak."""
    lo, hi = value_range
    data = []
    for i, (name, layers) in enumerate(hists.items()):
        share = np.mean(list(layers.values()), axis=0)
        centers = lo + (np.arange(len(share)) + 0.5) * (hi - lo) / len(share)
        color = colors[i % len(colors)] if colors else plot.colour(i)
        data.append(plot.line(centers, share, name, color=color, fill="tozeroy", shape="hvh"))
    return plot.figure(
        data, "weights (all layers; the end bins collect the tails)", 330, yaxis={"tickformat": ".0%"}
    )


def log_range(layer_histories: list[list[tuple[int, dict]]], key: str = "grad_rms") -> tuple[float, float]:
    """log10 range of one statistic over several runs: one colour scale for all of them."""
    values = [max(s[key], 1e-12) for h in layer_histories for _, lay in h for s in lay.values() if key in s]
    return (float(np.log10(min(values))), float(np.log10(max(values)))) if values else (-12.0, 0.0)


def example() -> dict:
    rng = np.random.default_rng(0)
    hist = [
        (
            s,
            {
                f"layer {i}": {
                    "hist": rng.random(40),
                    "hist_range": (-1.0, 1.0),
                    "grad_norm": 10.0**-i,
                    "dead": 0.1 * i,
                }
                for i in range(3)
            },
        )
        for s in range(10)
    ]
    return activation_histograms_figure(hist)
