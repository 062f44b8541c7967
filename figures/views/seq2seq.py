"""Chapter 21 live: both models' whole-number accuracy by length (beam search beside greedy at the
end), the loss, the example as each model writes it, and the attention of the model that has it,
forming as it trains."""

from __future__ import annotations

from figures import compare, plot
from figures import seq2seq as figures
from figures.variants import metric
from figures.views import NUMBERS, Views


def _names(run) -> list[str]:
    return [n for n in compare.variants(run) if run.last(metric(n, "longest right")) is not None]


def by_length_figure(infos: dict[str, dict]) -> dict:
    """Held-out numbers written entirely right, by how many digits they have: greedy solid, the
    beam dashed once the run has measured it."""
    data = []
    for i, (name, info) in enumerate(infos.items()):
        if "greedy_by_length" not in info:
            continue
        lengths = info["lengths"]
        data.append(
            plot.line(
                lengths,
                info["greedy_by_length"],
                f"{name}, greedy",
                color=plot.colour(i),
                mode="lines+markers",
            )
        )
        if "beam_by_length" in info:
            data.append(
                plot.line(
                    lengths,
                    info["beam_by_length"],
                    f"{name}, beam",
                    color=plot.colour(i),
                    dash="dash",
                    mode="lines+markers",
                )
            )
    return plot.figure(
        data,
        "held-out numbers written entirely right, by length",
        320,
        xaxis={"title": "digits", "dtick": 1},
        yaxis={"range": [0, 1.05], "tickformat": ".0%"},
    )


def written_text(infos: dict[str, dict]) -> dict:
    """The example as each model writes it now, marked right or wrong (plain text: a <pre>)."""
    lines = []
    for name, info in infos.items():
        example = info.get("example")
        if example:
            if not lines:
                lines.append(f"{''.join(example['input'])} should read: {' '.join(example['right'])}")
            mark = "✓" if example["written"] == example["right"] else "✗"
            lines.append(f"{mark} {name}: {' '.join(example['written']) or '(nothing yet)'}")
    return {"title": "the example, as each model writes it", "text": "\n".join(lines)}


def draw(run) -> dict:
    names = _names(run)
    if not names:
        return {}
    infos = {n: compare.variants(run)[n] for n in names}
    numbers = [[f"{n}: longest numbers right", f"{run.last(metric(n, 'longest right')):.0%}"] for n in names]
    for n in names:
        beam = run.last(metric(n, "longest right, beam"))
        if beam is not None:
            numbers.append([f"{n}: with the beam", f"{beam:.0%}"])
    parts = {
        NUMBERS: numbers,
        "length": by_length_figure(infos),
        "loss": compare.compare_curves_figure(
            run, names, ["train_loss"], "training loss (per word)", log_y=True
        ),
        "example": written_text(infos),
    }
    for n, info in infos.items():
        if "attention" in info:
            example = info["example"]
            outputs = [*example["written"], "■"][: len(info["attention"])]
            parts["attention"] = figures.attention_figure(
                info["attention"], example["input"], outputs, f"{n}: where each word looked"
            )
    return parts


VIEWS = Views(draw, (("length", "loss"), ("example", "attention")))
