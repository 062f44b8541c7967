"""Chapter 23 live. The training run: where each step's time goes (data wait, forward, backward,
optimizer; one stacked bar per window between updates), images per second, the loss (a resumed
run beside the run it continues), and the operators the profiler saw. The sweeps: images per
second against the batch size, or against the workers with the share spent waiting for data."""

from __future__ import annotations

from figures import curves, plot
from figures.views import NUMBERS, Views, last_number

PHASES = ("data", "forward", "backward", "optimizer")
PHASE_COLOURS = {"data": "#E45756", "forward": "#4C78A8", "backward": "#72B7B2", "optimizer": "#F2CF5B"}
COLUMNS = (
    ("operator", "operator", "{}"),
    ("calls per step", "calls / step", "{:.1f}"),
    ("CPU ms per step", "self CPU ms / step", "{:.2f}"),
    ("share of CPU time", "share", "{:.0%}"),
    ("CUDA ms per step", "self CUDA ms / step", "{:.2f}"),
)


def _windows(run) -> list[dict]:
    return [r for r in run.history if "images/s" in r and r.get("images/s")]


def data_share(row: dict) -> float:
    total = sum(row[p] for p in PHASES)
    return row["data"] / total if total else 0.0


def split_figure(rows: list[dict]) -> dict:
    """ms per step of each phase, one stacked bar per window, labelled by the step it ended at.
    The first window is the first step alone, which also pays for starting the workers and the
    first calls' set-up: it is left out once there are others, or it would flatten them."""
    rows = rows[1:] if len(rows) > 1 and rows[0]["step"] == 1 else rows
    xs = [str(r["step"]) for r in rows]
    data = [plot.bar(xs, [r[p] for r in rows], PHASE_COLOURS[p], name=p) for p in PHASES]
    return plot.figure(
        data,
        "where a step's time goes (ms per step, each window)",
        320,
        barmode="stack",
        xaxis={"title": "window ending at step", "type": "category"},
    )


def throughput_figure(rows: list[dict]) -> dict:
    xs, ys = [r["step"] for r in rows], [r["images/s"] for r in rows]
    return plot.figure(
        [plot.line(xs, ys, "images/s", color=plot.colour(0), mode="lines+markers")],
        "throughput (training images per second)",
        320,
        legend=False,
        xaxis={"title": "step"},
        yaxis={"rangemode": "tozero"},
    )


def operators_figure(rows: list[dict]) -> dict:
    columns = [c for c in COLUMNS if any(c[0] in r for r in rows)]  # CUDA times on a GPU only
    title = "torch.profiler: the operators that took the most time"
    return plot.table(rows, columns, title, first_width=3.2, row_height=24)


def loss_figure(run) -> dict:
    lines = {"training loss": run.series("train_loss")}
    styles = {}
    resumed = run.view.get("resumed")
    if resumed:
        lines = {"the run it continues": tuple(resumed["curve"]), "resumed": lines["training loss"]}
        styles = {"the run it continues": {"color": "#999999", "dash": "dash"}}
    return curves.curves_figure(lines, "training loss", log_y=True, styles=styles)


def draw(run) -> dict:
    rows = _windows(run)
    if not rows:
        return {}
    parts = {
        NUMBERS: [
            ["images / s", f"{rows[-1]['images/s']:,.0f}"],
            ["waiting for data", f"{data_share(rows[-1]):.0%} of a step"],
            ["held-out accuracy", last_number(run, "test_acc", ".1%")],
        ],
        "split": split_figure(rows),
        "throughput": throughput_figure(rows),
        "loss": loss_figure(run),
    }
    if run.last("GPU MB") is not None:
        parts[NUMBERS].append(["GPU memory, peak", f"{run.last('GPU MB'):,.0f} MB"])
    resumed = run.view.get("resumed")
    if resumed:
        parts[NUMBERS].append(
            ["final weights vs the uninterrupted run", f"{resumed['weights_apart']:.1e} apart"]
        )
    if run.view.get("operators"):
        parts["operators"] = operators_figure(run.view["operators"])
    return parts


TRAIN = Views(draw, (("split", "throughput"), ("loss", "operators")))


# -- the sweeps ----------------------------------------------------------------------------------


def sweep_figure(rows: list[dict], sweep: str) -> dict:
    xs = [r["setting"] for r in rows]
    data = [
        plot.line(xs, [r["images/s"] for r in rows], "images/s", color=plot.colour(0), mode="lines+markers")
    ]
    layout = {"yaxis": {"title": "images / s", "rangemode": "tozero"}}
    if sweep == "batch":
        layout["xaxis"] = {
            "title": "batch size",
            "type": "log",
            "tickvals": xs,
            "ticktext": [str(x) for x in xs],
        }
        title = "training step alone: images per second by batch size"
    else:
        shares = [r["data wait share"] for r in rows]
        data.append(
            plot.bar(
                xs, shares, PHASE_COLOURS["data"], name="share waiting for data", yaxis="y2", opacity=0.45
            )
        )
        layout["xaxis"] = {"title": "num_workers", "dtick": 1}
        layout["yaxis2"] = {
            "title": "waiting for data",
            "overlaying": "y",
            "side": "right",
            "range": [0, 1],
            "tickformat": ".0%",
            "dtick": 0.25,
            "showgrid": False,  # the images/s axis keeps the grid: one set of lines, not two
        }
        title = "the whole data path: images per second, and time spent waiting for data"
    return plot.figure(data, title, 360, **layout)


def draw_sweep(run) -> dict:
    rows = run.view.get("rows")
    if not rows:
        return {}
    sweep = run.view["sweep"]
    best = max(rows, key=lambda r: r["images/s"])
    numbers = [
        ["fastest", f"{best['images/s']:,.0f} images/s at {best['setting']}"],
        ["slowest", f"{min(r['images/s'] for r in rows):,.0f} images/s"],
    ]
    if sweep == "workers":
        numbers.append(["waiting for data, no workers", f"{rows[0]['data wait share']:.0%}"])
    return {NUMBERS: numbers, "sweep": sweep_figure(rows, sweep)}


SWEEP = Views(draw_sweep, (("sweep",),), button="Measure")
