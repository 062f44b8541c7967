"""Chapter 22 live. The bias experiment: each way of training side by side — accuracy, the two
gaps between the groups as they form, each group's error, false positive and false negative
rates, calibration by group; after training, which features carry the difference between the
groups. The feedback loop: round by round, how concentrated the clicks are, how much of the
catalogue is shown, the click rate and the long tail, for the loop alone and with exploration."""

from __future__ import annotations

from figures import compare, plot
from figures.variants import metric
from figures.views import NUMBERS, Views

GROUPS = ("A", "B")


def _names(run) -> list[str]:
    return [n for n in compare.variants(run) if run.last(metric(n, "accuracy")) is not None]


def gap_figure(run, names: list[str], gap: str, title: str) -> dict:
    """One gap over training, one line per way, with 0 (equal) marked."""
    fig = compare.compare_curves_figure(run, names, [gap], title)
    return plot.with_marks(fig, plot.hline(0.0, "equal", color="#222222", dash="dot"))


def _legend_below(fig: dict, rows: int, below: float = -0.3) -> dict:
    """Many entries: the legend under the plot (and its axis title), where it hides nothing."""
    fig["layout"]["legend"] = {"orientation": "h", "y": below, "yanchor": "top", "x": 0}
    fig["layout"]["margin"]["t"] = 40
    fig["layout"]["margin"]["b"] = 40 + 22 * rows
    fig["layout"]["height"] += 22 * rows
    return fig


def rates_figure(run, names: list[str]) -> dict:
    """The latest error, false positive and false negative rates of each group, by way."""
    data = []
    for j, (rate, label) in enumerate(
        (("error", "error"), ("FPR", "false positives"), ("FNR", "false negatives"))
    ):
        for group in GROUPS:
            ys = [run.last(metric(n, f"{rate} {group}")) for n in names]
            trace = plot.bar(names, ys, plot.colour(j), name=f"{label}, {group}")
            trace["marker"]["pattern"] = {"shape": "/" if group == "B" else ""}
            data.append(trace)
    fig = plot.figure(
        data,
        "each group's rates on held-out deliveries (B hatched)",
        320,
        barmode="group",
        yaxis={"tickformat": ".0%"},
    )
    return _legend_below(fig, 2, below=-0.12)


def calibration_figure(infos: dict[str, dict]) -> dict:
    """Predicted probability against the observed late share, by group (A solid, B dashed),
    one colour per way; on the diagonal a model means what it says for that group."""
    data = [plot.line([0, 1], [0, 1], "perfectly calibrated", color="#999999", dash="dot")]
    for i, (name, info) in enumerate(infos.items()):
        for g, group in enumerate(GROUPS):
            cal = info.get("calibration", {}).get(group)
            if not cal:
                continue
            pairs = [(p, o) for p, o in zip(cal["predicted"], cal["observed"]) if p is not None]
            trace = plot.line(
                [p for p, _ in pairs],
                [o for _, o in pairs],
                f"{name}, {group}",
                color=plot.colour(i),
                dash=plot.DASHES[g],
                mode="lines+markers",
            )
            data.append(trace)
    fig = plot.figure(
        data,
        "calibration by group (A solid, B dashed)",
        340,
        xaxis={"title": "predicted probability of late", "range": [0, 1]},
        yaxis={"title": "observed late share", "range": [0, 1]},
    )
    return _legend_below(fig, 1 + len(data) // 3)


def signal_figure(infos: dict[str, dict]) -> dict:
    """Integrated Gradients: per feature, its mean attribution on B's deliveries minus on A's."""
    data = []
    for i, (name, info) in enumerate(infos.items()):
        signal = info.get("group_signal")
        if signal:
            data.append(plot.bar(list(signal), list(signal.values()), plot.colour(i), name=name))
    return plot.figure(
        data,
        "what carries the group gap: attribution, B's mean − A's (IG, log-odds)",
        360,
        barmode="group",
    )


def accuracy_figure(run, names: list[str]) -> dict:
    return compare.compare_curves_figure(
        run, names, ["accuracy"], "accuracy on held-out deliveries", height=300
    )


def draw(run) -> dict:
    names = _names(run)
    if not names:
        return {}
    infos = compare.variants(run)
    numbers = [[f"{n}: parity gap", f"{run.last(metric(n, 'parity gap')):+.2f}"] for n in names]
    numbers += [[f"{n}: accuracy", f"{run.last(metric(n, 'accuracy')):.1%}"] for n in names]
    parts = {
        NUMBERS: numbers,
        "parity": gap_figure(run, names, "parity gap", "parity gap: B's share flagged late − A's"),
        "opportunity": gap_figure(
            run, names, "opportunity gap", "opportunity gap: B's true positive rate − A's"
        ),
        "accuracy": accuracy_figure(run, names),
        "rates": rates_figure(run, names),
        "calibration": calibration_figure({n: infos[n] for n in names}),
    }
    if any(info.get("group_signal") for info in infos.values()):
        parts["signal"] = signal_figure(infos)
    return parts


BIAS = Views(draw, (("parity", "opportunity"), ("accuracy", "rates"), ("calibration", "signal")))


# -- the feedback loop -------------------------------------------------------------------------


def by_round_figure(run, names: list[str], name: str, title: str, share: bool = False) -> dict:
    """One of the loops' round numbers against the round, one line per loop."""
    data = []
    for i, loop in enumerate(names):
        rows = [r for r in run.history if metric(loop, name) in r and metric(loop, "round") in r]
        xs, ys = [r[metric(loop, "round")] for r in rows], [r[metric(loop, name)] for r in rows]
        data.append(plot.line(xs, ys, loop, color=plot.colour(i), mode="lines+markers"))
    yaxis = {"tickformat": ".0%", "rangemode": "tozero"} if share else {}
    return plot.figure(data, title, 300, xaxis={"title": "round", "dtick": 1}, yaxis=yaxis)


def tail_figure(infos: dict[str, dict]) -> dict:
    """Clicks per item, most clicked first, for each loop: the long tail as it stands."""
    data = []
    for i, (loop, info) in enumerate(infos.items()):
        counts = info.get("clicks_per_item")
        if counts is not None:
            data.append(plot.line(list(range(1, len(counts) + 1)), counts, loop, color=plot.colour(i)))
    return plot.figure(
        data,
        "clicks per item, most clicked first",
        300,
        xaxis={"title": "item rank"},
        yaxis={"title": "clicks"},
    )


def draw_feedback(run) -> dict:
    infos = compare.variants(run)
    names = [n for n in infos if run.last(metric(n, "round")) is not None]
    if not names:
        return {}
    gini, shown = "click concentration (Gini)", "catalogue shown"
    numbers = [[f"{n}: {gini}", f"{run.last(metric(n, gini)):.2f}"] for n in names]
    numbers += [[f"{n}: {shown}", f"{run.last(metric(n, shown)):.0%}"] for n in names]
    return {
        NUMBERS: numbers,
        "concentration": by_round_figure(
            run, names, gini, "clicks per item: Gini coefficient (1: a few get all)"
        ),
        "catalogue": by_round_figure(
            run, names, shown, "share of the catalogue shown in the round", share=True
        ),
        "click rate": by_round_figure(
            run, names, "click rate", "share of the items shown that were clicked", share=True
        ),
        "tail": tail_figure({n: infos[n] for n in names}),
        "loss": compare.compare_curves_figure(
            run, names, ["train_mse"], "training loss (squared error on clicks)"
        ),
    }


FEEDBACK = Views(draw_feedback, (("concentration", "catalogue"), ("click rate", "tail"), ("loss",)))
