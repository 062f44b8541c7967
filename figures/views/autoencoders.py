"""Chapter 15 live: each model's latent map of the test digits, coloured by digit; the
reconstructions of clean and corrupted digits; the curves, and the VAE's two terms. With a digit
held out: each model's ROC curve of reconstruction error as an anomaly score, the error
histograms of the known digits and the held-out one, and the worst reconstructed test digits."""

from __future__ import annotations

import numpy as np

from figures import compare, curves, plot
from figures.variants import metric
from figures.views import NUMBERS, Views

DIGIT_COLOURS = (
    "#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2",
    "#b279a2", "#eeca3b", "#9d755d", "#ff9da6", "#555555",
)  # fmt: skip


def latent_figure(plane: np.ndarray, labels: np.ndarray, title: str, point=None, height: int = 340) -> dict:
    """Codes on the plane, one colour (and legend entry) per digit; `point` marks a chosen code."""
    data = []
    for d in range(10):
        mine = labels == d
        trace = plot.markers(plane[mine, 0], plane[mine, 1], str(d), size=4)
        trace["marker"]["color"] = DIGIT_COLOURS[d]
        data.append(trace)
    if point is not None:
        mark = plot.markers([point[0]], [point[1]], "decoded here", size=14)
        mark["marker"].update(color="black", symbol="x")
        data.append(mark)
    return plot.figure(data, title, height, xaxis={"title": "z₁"}, yaxis={"title": "z₂"})


def rows_figure(rows: dict[str, np.ndarray], title: str = "", pad: int = 2) -> dict:
    """Rows of small greyscale images in [0, 1], each row named on its left."""
    names = list(rows)
    n, h, w = next(iter(rows.values())).shape
    canvas = np.full((len(names) * (h + pad) - pad, n * (w + pad) - pad), np.nan, dtype=np.float32)
    for r, name in enumerate(names):
        for c, image in enumerate(rows[name]):
            canvas[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = image
    trace = plot.heatmap(canvas, "Greys", showscale=False, zmin=0, zmax=1)
    notes = [
        {
            "text": name,
            "x": -2,
            "y": r * (h + pad) + h / 2,
            "xanchor": "right",
            "showarrow": False,
            "font": {"size": 12},
        }
        for r, name in enumerate(names)
    ]
    fig = plot.figure([trace], title, 60 + 46 * len(names), legend=False, annotations=notes)
    fig["layout"]["margin"] = {"l": 150, "r": 10, "t": 34 if title else 8, "b": 5}
    return plot.image_axes(fig)


def grid_figure(images: np.ndarray, n: int, title: str) -> dict:
    """n×n decoded images as one picture, laid out as the points were on the plane."""
    canvas = images.reshape(n, n, 28, 28).transpose(0, 2, 1, 3).reshape(n * 28, n * 28)
    trace = plot.heatmap(canvas, "Greys", showscale=False, zmin=0, zmax=1)
    return plot.image_axes(plot.figure([trace], title, 560, legend=False))


def draw(run) -> dict:
    infos = compare.variants(run)
    names = list(infos)
    if not names or not run.history:
        return {}
    parts = {
        NUMBERS: [[f"{n}: error on corrupted", _number(run.last(metric(n, "corrupted_mse")))] for n in names],
        "loss": compare.compare_curves_figure(
            run, names, ["train_loss"], "training loss (per digit)", log_y=True
        ),
        "error": compare.compare_curves_figure(
            run,
            names,
            ["test_mse", "corrupted_mse"],
            "test error per pixel: clean (solid), corrupted (dashed)",
        ),
    }
    if "VAE" in names and run.series(metric("VAE", "kl"))[0]:
        parts["vae terms"] = curves.curves_figure(
            {"reconstruction": run.series(metric("VAE", "recon")), "KL": run.series(metric("VAE", "kl"))},
            "VAE: the two terms of its loss (per digit)",
            log_y=True,
            height=300,
        )
    rows = {}
    for name, info in infos.items():
        if "plane" in info and "labels" in info:
            parts[f"latent: {name}"] = latent_figure(
                info["plane"], info["labels"], f"{name}: test digits' codes"
            )
        if "from_clean" in info:
            if not rows:
                rows = {"test digits": info["originals"], "corrupted": info["corrupted"]}
            rows[f"{name} (clean in)"] = info["from_clean"]
            rows[f"{name} (corrupted in)"] = info["from_corrupted"]
    if rows:
        parts["reconstructions"] = rows_figure(rows, "reconstructions")
    held = {name: info for name, info in infos.items() if "roc" in info}
    if held:
        parts[NUMBERS] += [[f"{n}: AUC for the held-out digit", _auc(run, n)] for n in held]
        parts.update(anomaly_parts(run, held))
    return parts


def anomaly_parts(run, infos: dict[str, dict]) -> dict:
    """The held-out digit as an anomaly: every model's ROC curve (AUC in its name), and for the
    first model the two error histograms and its worst reconstructions."""
    first, info = next(iter(infos.items()))
    digit = info["held_out"]
    curves_ = [
        plot.line(i["roc"][0], i["roc"][1], f"{n}: AUC {_auc(run, n)}", color=plot.colour(k))
        for k, (n, i) in enumerate(infos.items())
    ]
    curves_.append(plot.line([0, 1], [0, 1], "chance: AUC 0.50", color="#999", dash="dot"))
    roc = plot.figure(
        curves_,
        f"finding the {digit}s by reconstruction error: ROC",
        340,
        xaxis={"title": "known digits flagged (false positive rate)", "range": [0, 1]},
        yaxis={"title": f"{digit}s flagged (true positive rate)", "range": [0, 1.02]},
    )
    edges = np.asarray(info["error_edges"])
    middle = ((edges[:-1] + edges[1:]) / 2).tolist()
    shares = {
        "digits it trained on": ("error_known", "#4c78a8"),
        f"the {digit}s (never seen)": ("error_held", "#e45756"),
    }
    known, novel = (
        plot.bar(middle, np.asarray(info[field]).tolist(), colour, name=name, opacity=0.6)
        for name, (field, colour) in shares.items()
    )
    hist = plot.figure(
        [known, novel],
        f"{first}: reconstruction error of the test digits",
        340,
        xaxis={"title": "error per pixel"},
        yaxis={"title": "share of the group"},
    )
    hist["layout"]["barmode"] = "overlay"
    labels = " ".join(str(int(d)) for d in info["worst_labels"])
    worst = rows_figure(
        {"worst reconstructed": info["worst"], "rebuilt": info["worst_rebuilt"]},
        f"{first}: the test digits it rebuilds worst (digits {labels})",
    )
    return {
        "anomaly: ROC": roc,
        "anomaly: errors": hist,
        "anomaly: worst": worst,
    }


def _auc(run, name: str) -> str:
    value = run.last(metric(name, "anomaly AUC"))
    return "–" if value is None else f"{value:.2f}"


def _number(value) -> str:
    return "–" if value is None else f"{value:.4f}"


VIEWS = Views(
    draw,
    (
        ("anomaly: ROC", "anomaly: errors"),
        ("anomaly: worst",),
        ("latent: *",),
        ("reconstructions", "vae terms"),
        ("loss", "error"),
    ),
)
