"""Chapter 7 live: the curves, the confusion matrix, the first layer's filters, and the layers."""

from __future__ import annotations

from figures import curves, images, layers
from figures.views import NUMBERS, Views, last_number

LAYOUT = (((("loss", "accuracy"), 1), (("confusion", "filters"), 1)), ("health", "flow"), ("activations",))


def draw(run) -> dict:
    if not run.history:
        return {}
    v = run.view
    title = "first-layer filters" if run.cfg.model == "cnn" else "first-layer weights (16 units)"
    snapshots = lambda m: ([r["step"] for r in run.history if m in r], [r[m] for r in run.history if m in r])  # noqa: E731
    parts = {
        NUMBERS: [
            ["test accuracy", last_number(run, "test_acc", ".1%")],
            ["test loss", last_number(run, "test_loss", ".3f")],
            ["epoch", last_number(run, "epoch", ".1f")],
        ],
        "loss": curves.curves_figure(
            {"batches (every step)": run.series("train_loss"), "test set": snapshots("test_loss")},
            "loss",
            styles={"batches (every step)": {"color": "#b7c7dc"}},
        ),
        "accuracy": curves.curves_figure({"test set": snapshots("test_acc")}, "test accuracy", height=260),
        "confusion": images.confusion_figure(v["confusion"], v["classes"]),
        "filters": images.mosaic_figure(v["filters"], cols=8, title=title, height=200),
    }
    if run.layer_history:
        parts["health"] = layers.layer_health_figure(run.layers)
        parts["flow"] = layers.gradient_flow_over_time_figure(run.layer_history)
        parts["activations"] = layers.activation_histograms_figure(run.layer_history)
    return parts


VIEWS = Views(draw, LAYOUT)
