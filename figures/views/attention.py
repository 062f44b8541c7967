"""Chapter 14 live: the loss, accuracy by length (trained range shaded), where each position
looks, and the positional encodings."""

from __future__ import annotations

from figures import attention as figures
from figures import curves
from figures.views import NUMBERS, Views, last_number

LAYOUT = (("loss", "length"), ("maps",), ("positions",))
KINDS = ("decoder cross-attention", "encoder self-attention", "decoder self-attention")


def axes(kind: str, inputs: list[str], outputs: list[str]) -> tuple[list[str], list[str]]:
    """(queries, keys) labels for one kind of attention map."""
    written = ["▶"] + outputs[:-1]  # what the decoder reads: start, then the outputs so far
    return {
        "decoder cross-attention": (outputs, inputs),
        "encoder self-attention": (inputs, inputs),
        "decoder self-attention": (written, written),
    }[kind]


def maps(run, kind: str = KINDS[0]) -> dict:
    example = run.view["example"]
    queries, keys = axes(kind, example["input"], example["output"])
    title = f"{kind} for {' '.join(example['input'])}"
    return figures.attention_grid_figure(run.view["attention"][kind], queries, keys, title)


def draw(run) -> dict:
    if not run.history:
        return {}
    v = run.view
    greedy = run.last("greedy_sequence_acc")
    by_length = {"teacher forcing": v["acc_by_length"]}
    if "greedy_acc_by_length" in v:
        by_length["written by the model"] = v["greedy_acc_by_length"]
    return {
        NUMBERS: [
            ["sequences right (teacher forcing)", last_number(run, "sequence_acc", ".0%")],
            ["digits right (teacher forcing)", last_number(run, "token_acc", ".0%")],
            ["sequences written right", "after training" if greedy is None else f"{greedy:.0%}"],
        ],
        "loss": curves.curves_figure(
            {"training loss": run.series("train_loss")}, "training loss", log_y=True
        ),
        "length": figures.by_length_figure(v["lengths"], by_length, v["trained_lengths"]),
        "maps": maps(run),
        "positions": figures.positional_figure(v["positions"]),
    }


VIEWS = Views(draw, LAYOUT)
