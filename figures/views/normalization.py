"""Chapter 5 live: the variants' curves overlaid, each layer's gradient and spread now, and
each variant's gradient per layer over training on one colour scale."""

from __future__ import annotations

from figures import compare, layers
from figures.variants import layer_history_of
from figures.views import Views

LAYOUT = (("loss", "accuracy"), ("grads", "spread"), ("heat: *",))


def draw(run) -> dict:
    infos = compare.variants(run)
    names = list(infos)
    if not names or not run.history:
        return {}
    histories = {n: layer_history_of(run.layer_history, n) for n in names}
    latest = {n: h[-1][1] for n, h in histories.items() if h}
    z_range = layers.log_range(list(histories.values()))
    parts = {
        "loss": compare.compare_curves_figure(run, names, ["train_loss"], "training loss", log_y=True),
        "accuracy": compare.compare_curves_figure(run, names, ["test_acc"], "test accuracy"),
        "grads": compare.by_layer_figure(
            latest, "grad_rms", "gradient per weight (RMS), layer by layer, now"
        ),
        "spread": compare.by_layer_figure(latest, "act_std", "spread (std) of each layer's output, now"),
    }
    for name, history in histories.items():
        if history:
            title = compare.status_line(name, infos[name])
            parts[f"heat: {name}"] = layers.gradient_heatmap_figure(
                history, height=300, z_range=z_range, title=title
            )
    return parts


VIEWS = Views(draw, LAYOUT)
