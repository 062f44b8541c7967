"""Chapter 13 live: bits per character against what letter frequencies alone give, the latest
sample the model writes, and its layers."""

from __future__ import annotations

import math

from figures import curves, layers, plot
from figures.views import NUMBERS, Views, last_number

LAYOUT = (("bits", "sample"), ("health", "flow"), ("activations",))


def draw(run) -> dict:
    if not run.history:
        return {}
    v = run.view
    steps, nats = run.series("train_loss")
    val = [(r["step"], r["val_bits_per_char"]) for r in run.history if "val_bits_per_char" in r]
    bits = curves.curves_figure(
        {
            "training batches (every step)": (steps, [n / math.log(2) for n in nats]),
            "validation (unseen text)": ([s for s, _ in val], [b for _, b in val]),
        },
        "bits per character",
        styles={"training batches (every step)": {"color": "#b7c7dc"}},
    )
    unigram = v.get("unigram_bits")
    if unigram:
        bits = plot.with_marks(bits, plot.hline(unigram, "letter frequencies only"))
    parts = {
        NUMBERS: [
            ["validation bits / char", last_number(run, "val_bits_per_char", ".2f")],
            ["only letter frequencies", f"{unigram:.2f} bits" if unigram else "–"],
            ["characters", str(len(v.get("vocab", "")))],
        ],
        "bits": bits,
    }
    sample = v.get("sample")
    if sample:
        title = f"Sample at step {sample['step']:,} (temperature {run.cfg.temperature}), after the prompt"
        parts["sample"] = {"title": title, "text": sample["prompt"] + "│" + sample["text"]}
    if run.layer_history:
        parts["health"] = layers.layer_health_figure(run.layers, "grad_rms")
        parts["flow"] = layers.gradient_flow_over_time_figure(run.layer_history, "grad_rms")
        parts["activations"] = layers.activation_histograms_figure(run.layer_history)
    return parts


VIEWS = Views(draw, LAYOUT)
