"""Chapter 8 live: the three ways of adapting side by side (curves, what fine-tuning changes
layer by layer), accuracy against labels per class, and the plain, residual and dense stacks'
gradients layer by layer."""

from __future__ import annotations

from figures import compare, curves, layers, plot
from figures.variants import layer_history_of, metric
from figures.views import NUMBERS, Views

PRETRAIN = "pre-training: train_loss"


def _pretrain_figure(run) -> dict:
    xs, ys = run.series(PRETRAIN)
    if not xs:  # kept from an earlier run: its curve came with the first snapshot
        xs, ys = (list(v) for v in run.view.get("pretrain_curve", ((), ())))
    return curves.curves_figure({"digits 0–4": (xs, ys)}, "pre-training loss (digits 0–4)", height=260)


def draw_adapt(run) -> dict:
    infos = compare.variants(run)
    names = list(infos)
    phase = run.view.get("phase", "")
    parts = {
        NUMBERS: [[f"{n} accuracy", _percent(run.last(metric(n, "test_acc")))] for n in names]
        or [["phase", phase or "–"]],
        "pretrain": _pretrain_figure(run),
    }
    if not names:
        return parts if run.history else {}
    parts["loss"] = compare.compare_curves_figure(
        run, names, ["train_loss"], "training loss on the few labelled 5–9s", log_y=True
    )
    parts["accuracy"] = compare.compare_curves_figure(
        run, names, ["test_acc"], "test accuracy on unseen 5–9s"
    )
    cka = {n: info["cka"] for n, info in infos.items() if "cka" in info}
    if cka:
        parts["cka"] = cka_figure(cka)
    return parts


def cka_figure(cka: dict[str, list[float]]) -> dict:
    """Each conv stage's linear CKA to the same stage of the pre-trained backbone, per way."""
    stages = [f"conv {i + 1}" for i in range(max(len(v) for v in cka.values()))]
    data = [
        plot.line(stages, values, name, color=plot.colour(i), mode="lines+markers")
        for i, (name, values) in enumerate(cka.items())
    ]
    lowest = min(min(v) for v in cka.values())
    return plot.figure(
        data,
        "similarity to the pre-trained layer (linear CKA): 1 = unchanged",
        300,
        xaxis={"type": "category", "title": "layer"},
        yaxis={"range": [max(0.0, lowest - 0.05 * (1 - lowest) - 0.01), 1.005]},
    )


def _percent(value) -> str:
    return "–" if value is None else f"{value:.1%}"


ADAPT = Views(draw_adapt, (("loss", "accuracy"), ("cka", "pretrain")))


def draw_sweep(run) -> dict:
    results = run.view.get("sweep", {})
    if not results and not run.history:
        return {}
    data = []
    for i, (name, points) in enumerate(results.items()):
        if points:
            xs, ys = zip(*points)
            data.append(plot.line(list(xs), list(ys), name, color=plot.colour(i), mode="lines+markers"))
    done = sum(len(p) for p in results.values())
    parts = {
        NUMBERS: [["fits done", str(done)]]
        + [[name, _percent(points[-1][1]) if points else "–"] for name, points in results.items()],
        "sweep": plot.figure(
            data,
            "test accuracy on unseen 5–9s against labelled examples per class",
            360,
            xaxis={
                "type": "log",
                "title": "labelled examples per class",
                "tickvals": [5, 10, 20, 50, 100, 200, 500],
            },
            yaxis={"title": "test accuracy"},
        ),
        "pretrain": _pretrain_figure(run),
    }
    return parts


SWEEP = Views(draw_sweep, (("sweep",), ("pretrain",)))


def draw_blocks(run) -> dict:
    infos = compare.variants(run)
    names = list(infos)
    if not names or not run.history:
        return {}
    histories = {n: layer_history_of(run.layer_history, n) for n in names}
    latest = {n: h[-1][1] for n, h in histories.items() if h}
    z_range = layers.log_range(list(histories.values()))
    parts = {
        NUMBERS: [[f"{n} accuracy", _percent(run.last(metric(n, "test_acc")))] for n in names],
        "loss": compare.compare_curves_figure(run, names, ["train_loss"], "training loss", log_y=True),
        "accuracy": compare.compare_curves_figure(run, names, ["test_acc"], "test accuracy (8×8 digits 0–9)"),
        "grads": compare.by_layer_figure(
            latest, "grad_rms", "gradient per weight (RMS), layer by layer, now"
        ),
    }
    for name, history in histories.items():
        if history:
            title = f"{compare.status_line(name, infos[name])} · {infos[name].get('weights', 0):,} weights"
            parts[f"heat: {name}"] = layers.gradient_heatmap_figure(
                history, height=300, z_range=z_range, title=title
            )
    return parts


BLOCKS = Views(draw_blocks, (("loss", "accuracy"), ("grads",), ("heat: *",)))
