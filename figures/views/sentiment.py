"""Chapter 12b live: accuracy on each slice of the test reviews (plain, negated, intensified),
the word map, the LSTM's hidden states over one negated review; after training, a typed
review's word-by-word pushes."""

from __future__ import annotations

import numpy as np

from figures import compare, plot, sequences
from figures.variants import metric
from figures.views import NUMBERS, Views

ROLE_COLOURS = {
    "positive word": "#4c78a8",
    "negative word": "#e45756",
    "negation": "#111111",
    "intensifier": "#f58518",
    "other": "#bab0ac",
}


def _legend(run) -> dict:
    """The words, their roles and the test slices, as the first snapshot sent them."""
    return next(i for i in compare.variants(run).values() if "vocabulary" in i)


def slices_figure(run, names: list[str]) -> dict:
    fig = compare.compare_curves_figure(
        run,
        names,
        [f"acc {s}" for s in _legend(run)["slices"]],
        "test accuracy: plain (solid), negated (dashed), intensified (dotted)",
    )
    fig["layout"]["yaxis"] = {"range": [-0.02, 1.02], "tickformat": ".0%"}
    fig["layout"]["margin"]["t"] = 80  # a legend of six lines
    return fig


def slice_bars_figure(run, names: list[str]) -> dict:
    slices = _legend(run)["slices"]
    data = [
        plot.bar(
            slices,
            [run.last(metric(n, f"acc {s}")) or 0 for s in slices],
            plot.colour(i),
            name=n,
        )
        for i, n in enumerate(names)
    ]
    fig = plot.figure(
        data, "now, by slice", 300, barmode="group", yaxis={"range": [0, 1], "tickformat": ".0%"}
    )
    return plot.with_marks(fig, plot.hline(0.5, "chance"))


def word_map_figure(points: np.ndarray, name: str, words: list[str], roles: list[str]) -> dict:
    """One point per word, coloured by its role in the grammar."""
    points = np.asarray(points)
    data = []
    for r, colour in ROLE_COLOURS.items():
        at = [k for k, role in enumerate(roles) if role == r]
        trace = plot.markers(points[at, 0], points[at, 1], r, size=8)
        trace["marker"]["color"] = colour
        trace.update(mode="markers+text", text=[words[k] for k in at], textposition="top center")
        trace["textfont"] = {"size": 10, "color": colour}
        data.append(trace)
    title = f"{name}: word embeddings (2 principal components)"
    return plot.figure(data, title, 380, xaxis={"zeroline": False}, yaxis={"zeroline": False})


def word_weights_figure(weights: np.ndarray, name: str, words: list[str], roles: list[str]) -> dict:
    """The bag of words' one weight per word, sorted, coloured by role: all a word can ever say."""
    weights = np.asarray(weights)[:, 0]
    order = np.argsort(weights)
    trace = plot.bar(
        [words[k] for k in order],
        weights[order].tolist(),
        [ROLE_COLOURS[roles[k]] for k in order],
        hovertemplate="%{x}: %{y:.2f}<extra></extra>",
        showlegend=False,
    )
    legend = [
        {**plot.bar([None], [None], colour, name=r), "showlegend": True} for r, colour in ROLE_COLOURS.items()
    ]
    fig = plot.figure([trace, *legend], f"{name}: each word's weight (the same in every review)", 380)
    fig["layout"]["xaxis"] = {"tickangle": -60, "tickfont": {"size": 10}}
    return fig


def _word_ticks(fig: dict, words: list[str]) -> dict:
    fig["layout"]["xaxis"] = {"tickvals": list(range(len(words))), "ticktext": words, "title": ""}
    return fig


def pushes_figure(explained: dict[str, dict]) -> dict:
    """Each model's push on its logit, word by word (LayerIntegratedGradients), grouped by word."""
    first = next(iter(explained.values()))
    labels = [f"{w}\u200b" * (i + 1) for i, w in enumerate(first["words"])]  # repeated words stay apart
    data = [
        plot.bar(labels, np.asarray(e["push"], float).tolist(), plot.colour(i), name=name)
        for i, (name, e) in enumerate(explained.items())
    ]
    fig = plot.figure(data, "each word's push toward “positive” (logit units)", 340, barmode="group")
    fig["layout"]["xaxis"] = {"tickvals": labels, "ticktext": first["words"]}
    return fig


def draw(run) -> dict:
    infos = compare.variants(run)
    names = [n for n in infos if run.last(metric(n, "accuracy")) is not None]
    if not names:
        return {}
    parts = {
        NUMBERS: [
            [f"{n}: {s}", f"{run.last(metric(n, f'acc {s}')):.0%}"]
            for n in names
            for s in ("plain", "negated")
        ],
        "slices": slices_figure(run, names),
        "now": slice_bars_figure(run, names),
        "loss": compare.compare_curves_figure(
            run, names, ["train_loss"], "training loss", log_y=True, height=260
        ),
    }
    legend = _legend(run)
    for name, info in infos.items():
        if "words" in info:
            shown = word_weights_figure if name == "bag of words" else word_map_figure
            parts[f"words: {name}"] = shown(info["words"], name, legend["vocabulary"], legend["roles"])
        if "states" in info and "shown" in info:
            parts["states"] = _word_ticks(
                sequences.hidden_heatmap_figure(
                    info["states"], title=f"{name}: hidden state, word by word", height=300
                ),
                info["shown"].split(),
            )
    return parts


VIEWS = Views(draw, (((("slices",), 2), (("now",), 1)), ("words: *",), ((("states",), 2), (("loss",), 1))))
