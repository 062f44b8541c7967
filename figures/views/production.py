"""Chapter 19 live: training, then each variant as it is made and measured: the export check,
the size/accuracy/latency table, accuracy against sparsity, latency with its spread, and what
int8 saves on this net and on chapter 8's CNN, dynamic against static."""

from __future__ import annotations

from figures import curves, plot
from figures.views import NUMBERS, Views, last_number

LAYOUT = (("loss", "accuracy"), ("table",), ("sweep", "latency"), ("quantized", "export"))
KINDS = ("float32", "int8 dynamic", "int8 static")
COLUMNS = (
    ("variant", "variant", "{}"),
    ("size_kb", "size on disk (KB)", "{:,.0f}"),
    ("gzip_kb", "gzipped (KB)", "{:,.0f}"),
    ("accuracy", "accuracy", "{:.1%}"),
    ("max_diff", "max |Δ logit| vs float32", "{:.1e}"),
    ("b1_median_ms", "batch 1: median ms", "{:.3f}"),
    ("b1_p90_ms", "batch 1: p90 ms", "{:.3f}"),
    ("b64_median_ms", "batch 64: median ms", "{:.2f}"),
    ("b64_p90_ms", "batch 64: p90 ms", "{:.2f}"),
)


def draw(run) -> dict:
    if not run.history and not run.view:
        return {}
    v = run.view
    parts = {NUMBERS: [["test accuracy", last_number(run, "test_acc", ".1%")]]}
    linear = v.get("linear_bytes")
    if linear:
        parts[NUMBERS].append(
            ["Linear layers, float32 → int8", f"{linear['float32'] / linear['int8']:.1f}× smaller"]
        )
    diffs = v.get("export", {}).get("max_diff", {})
    if "ONNX (onnxruntime)" in diffs:
        parts[NUMBERS].append(["ONNX vs PyTorch, max |Δ|", f"{diffs['ONNX (onnxruntime)']:.1e}"])
    loss = run.series("train_loss")
    if loss[0]:
        parts["loss"] = curves.curves_figure({"batches": loss}, "training loss", height=240)
    acc = (
        [r["step"] for r in run.history if "test_acc" in r],
        [r["test_acc"] for r in run.history if "test_acc" in r],
    )
    if acc[0]:
        parts["accuracy"] = curves.curves_figure({"test set": acc}, "test accuracy", height=240)
    if v.get("table"):
        parts["table"] = table_figure(v["table"])
        parts["latency"] = latency_figure(v["table"])
    if v.get("sweep"):
        chosen = run.cfg.sparsity if run.cfg is not None else None
        parts["sweep"] = sweep_figure(v["sweep"], chosen)
    if v.get("quantized_sizes"):
        parts["quantized"] = quantized_figure(v["quantized_sizes"])
    if "export" in v:
        parts["export"] = {"title": "Exported models against PyTorch", "text": export_text(v)}
    return parts


def table_figure(rows: list[dict]) -> dict:
    return plot.table(rows, COLUMNS, "each variant: size, accuracy, latency (CPU, this server)")


def latency_figure(rows: list[dict]) -> dict:
    names = [r["variant"] for r in rows]
    data = []
    for i, (batch, label) in enumerate(((1, "batch 1"), (64, "batch 64"))):
        median = [r[f"b{batch}_median_ms"] for r in rows]
        p90 = [r[f"b{batch}_p90_ms"] - r[f"b{batch}_median_ms"] for r in rows]
        data.append(
            plot.bar(
                names,
                median,
                plot.colour(i),
                name=label,
                error_y={"type": "data", "array": p90, "symmetric": False, "thickness": 1},
            )
        )
    values = [r[k] for r in rows for k in ("b1_median_ms", "b64_p90_ms")]
    return plot.figure(
        data,
        "latency per call: median, whisker to p90",
        300,
        barmode="group",
        xaxis={"type": "category"},
        yaxis=plot.log_axis(values, title="ms"),
    )


def sweep_figure(sweep: dict, chosen: float | None) -> dict:
    fig = plot.figure(
        [plot.line(sweep["sparsity"], sweep["accuracy"], "global magnitude pruning", mode="lines+markers")],
        "test accuracy against sparsity (no fine-tuning)",
        300,
        legend=False,
        xaxis={"title": "share of weights set to zero", "range": [0, 1]},
        yaxis={"title": "accuracy", "range": [0, 1.02]},
    )
    return plot.with_marks(fig, plot.vline(chosen, "your sparsity")) if chosen is not None else fig


def quantized_figure(sizes: dict[str, dict]) -> dict:
    """Each net's saved size in float32, dynamic int8 and static int8, relative to its float32:
    dynamic int8 shrinks only the Linear layers, so a net whose weights sit in convolutions
    barely shrinks until static quantization takes the convolutions too."""
    nets = list(sizes)
    data = []
    for k, kind in enumerate(KINDS):
        shares = [sizes[n][kind] / sizes[n]["float32"] if sizes[n][kind] else None for n in nets]
        labels = [f"{sizes[n][kind] / 1024:,.0f} KB" if sizes[n][kind] else "not supported" for n in nets]
        data.append(
            plot.bar(
                [f"{n}<br>{sizes[n]['linear_share']:.0%} of weights in Linear" for n in nets],
                shares,
                plot.colour(k),
                name=kind,
                text=labels,
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig = plot.figure(data, "saved size after int8 quantization (share of float32)", 320)
    fig["layout"].update(barmode="group", yaxis={"title": "share of the float32 file", "range": [0, 1.1]})
    return fig


def export_text(v: dict) -> str:
    e, tolerance = v["export"], v.get("tolerance", 1e-4)
    lines = [
        f"Tolerance: largest |logit difference| from the eager float32 model ≤ {tolerance:.0e}, on 64 images."
    ]
    for name, diff in e["max_diff"].items():
        verdict = "within" if diff <= tolerance else "OUTSIDE"
        lines.append(f"{name}: max |Δ| = {diff:.1e}, {verdict} tolerance")
    if e.get("onnx_error"):
        lines.append(e["onnx_error"])
    return "\n".join(lines)


VIEWS = Views(draw, LAYOUT)
