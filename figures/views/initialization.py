"""Chapter 4 live: the curves, and every layer's gradient and activations as training goes."""

from __future__ import annotations

from figures import curves, layers
from figures.views import NUMBERS, Views, last_number

LAYOUT = (("loss", "accuracy"), ("health",), ("heat",), ("activations",))


def draw(run) -> dict:
    if not run.history:
        return {}
    shares = run.view.get("distinct_units", [])
    width = run.cfg.width
    numbers = [
        ["test accuracy", last_number(run, "test_acc", ".1%")],
        ["training loss", last_number(run, "train_loss", ".3f")],
        ["first ÷ last layer gradient", last_number(run, "first/last gradient", ".1e")],
    ]
    if shares:
        numbers.append(["distinct units (fewest in a layer)", f"{min(shares) * width:.0f} of {width}"])
    snapshots = lambda m: ([r["step"] for r in run.history if m in r], [r[m] for r in run.history if m in r])  # noqa: E731
    parts = {
        NUMBERS: numbers,
        "loss": curves.curves_figure(
            {"batches (every step)": run.series("train_loss"), "test set": snapshots("test_loss")}, "loss"
        ),
        "accuracy": curves.curves_figure({"test set": snapshots("test_acc")}, "test accuracy"),
    }
    if run.layer_history:
        band = 90 if len(run.layers) <= 8 else 36
        parts["health"] = layers.layer_health_figure(run.layers, "grad_rms")
        parts["heat"] = layers.gradient_heatmap_figure(run.layer_history)
        parts["activations"] = layers.activation_histograms_figure(run.layer_history, band)
    return parts


VIEWS = Views(draw, LAYOUT)
