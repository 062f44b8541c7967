"""Chapter 12 live: the cells' curves, accuracy by distance (or a forecast), how far back the
gradient reaches, and each cell's hidden state over one sequence."""

from __future__ import annotations

from figures import compare, sequences
from figures.views import NUMBERS, Views

LAYOUT = (("loss", "score"), ("span", "forecast", "grads"), ("hidden: *",))


def draw(run) -> dict:
    infos = compare.variants(run)
    names = list(infos)
    if not names or not run.history:
        return {}
    memory = run.cfg.task == "memory"
    score = "test_acc" if memory else "test_mse"
    title = "accuracy with the mark at the full span" if memory else "test MSE against the clean future"
    numbers = []
    for name in names:
        value = run.last(f"{name}: {score}")
        shown = "–" if value is None else (f"{value:.0%}" if memory else f"{value:.3f}")
        numbers.append([f"{name}: {'accuracy' if memory else 'test MSE'}", shown])
    parts = {
        NUMBERS: numbers,
        "loss": compare.compare_curves_figure(run, names, ["train_loss"], "training loss", log_y=True),
        "score": compare.compare_curves_figure(run, names, [score], title, log_y=not memory),
    }
    if memory:
        spans = {n: (i["spans"], i["acc_by_span"]) for n, i in infos.items() if "spans" in i}
        chance = next((i["chance"] for i in infos.values() if "chance" in i), None)
        parts["span"] = sequences.by_span_figure(spans, chance)
    else:
        shown = {n: i for n, i in infos.items() if "forecast" in i}
        if shown:
            first = next(iter(shown.values()))["forecast"]
            preds = {n: i["forecast"]["pred"][0] for n, i in shown.items()}
            parts["forecast"] = sequences.forecast_figure(first["past"][0], first["truth"][0], preds)
    grads = {n: i["grad_by_step"] for n, i in infos.items() if "grad_by_step" in i}
    if grads:
        parts["grads"] = sequences.gradient_by_step_figure(grads)
    for name, info in infos.items():
        if "hidden" in info:
            label = f"{compare.status_line(name, info)} · hidden state over the first test sequence"
            parts[f"hidden: {name}"] = sequences.hidden_heatmap_figure(
                info["hidden"], 0 if memory else None, title=label
            )
    return parts


VIEWS = Views(draw, LAYOUT)
