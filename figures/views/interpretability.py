"""Chapter 18 live: eight attribution methods on the same digits, the sanity checks (cascading
and data randomization) beside their maps, IG's delta and each method's faithfulness; then
attacks on a standard and an adversarially trained CNN."""

from __future__ import annotations

import numpy as np

from figures import curves, images, plot
from figures.variants import metric
from figures.views import NUMBERS, Views, last_number

SHORT = {
    "Saliency": "Saliency",
    "Integrated Gradients": "IG",
    "SmoothGrad": "SmoothGrad",
    "DeepLift": "DeepLift",
    "GradientShap": "GradShap",
    "Guided Backprop": "Guided BP",
    "Occlusion": "Occlusion",
    "Grad-CAM": "Grad-CAM",
}
HIGHLIGHT = {"Guided Backprop": "#e45756", "Saliency": "#4c78a8", "Integrated Gradients": "#54a24b"}

EXPLAIN_LAYOUT = (
    ("loss", "accuracy"),
    ("maps",),
    (("cascade", 1), ("cascade maps", 1.5)),
    (("shuffled", 1), ("shuffled maps", 1.5)),
    ("ig delta", "infidelity", "sensitivity"),
)


def draw_explain(run) -> dict:
    if not run.history:
        return {}
    v = run.view
    parts = {
        NUMBERS: [
            ["test accuracy", last_number(run, "digits test_acc", ".1%")],
            ["Guided BP ρ, all randomized", last_number(run, "cascade ρ: Guided Backprop", ".2f")],
            ["IG ρ, all randomized", last_number(run, "cascade ρ: Integrated Gradients", ".2f")],
            ["IG delta", last_number(run, "IG delta", ".1e")],
        ]
    }
    losses = {name: run.series(f"{name} loss") for name in ("digits", "shuffled labels")}
    losses = {k: s for k, s in losses.items() if s[0]}
    if losses:
        parts["loss"] = curves.curves_figure(losses, "training loss", height=260)
    accs = {k: run.series(f"{k} test_acc") for k in ("digits", "shuffled labels")}
    accs = {k: s for k, s in accs.items() if len(s[0]) > 1}
    if accs:
        parts["accuracy"] = curves.curves_figure(accs, "test accuracy", height=260)
    if "shown" in v:
        parts["maps"] = maps_figure(v["shown"])
    if "cascade" in v:
        parts["cascade"] = cascade_figure(v["cascade"])
        parts["cascade maps"] = cascade_maps_figure(v["cascade"], v.get("shown"))
    if "shuffled" in v:
        parts["shuffled"] = shuffled_figure(v["shuffled"])
        parts["shuffled maps"] = shuffled_maps_figure(v["shuffled"], v.get("shown"))
    if "ig_delta" in v:
        d = v["ig_delta"]
        fig = plot.figure(
            [plot.line(d["steps"], d["delta"], "IG", mode="lines+markers")],
            "IG convergence delta against its steps",
            280,
            legend=False,
            xaxis={"title": "steps", "type": "log", "tickvals": d["steps"]},
            yaxis=plot.log_axis(d["delta"], title="mean |delta|"),
        )
        parts["ig delta"] = fig
    if v.get("faithfulness"):
        f = v["faithfulness"]
        names = [SHORT[m] for m in f]
        for key, title in (
            ("infidelity", "infidelity (lower: more faithful)"),
            ("sensitivity", "sensitivity_max (lower: steadier)"),
        ):
            values = [f[m][key] for m in f]
            parts[key] = plot.figure(
                [plot.bar(names, values, [HIGHLIGHT.get(m, "#9aa7b8") for m in f])],
                title,
                280,
                legend=False,
                xaxis={"type": "category"},
                yaxis=plot.log_axis(values)
                if max(values) > 20 * max(min(values), 1e-12)
                else {"exponentformat": "e"},
            )
    return parts


def maps_figure(shown: dict) -> dict:
    methods = list(shown["maps"])  # the lab's order of the methods
    grid = [[img, *(shown["maps"][m][i] for m in methods)] for i, img in enumerate(shown["images"])]
    rows = [f"{t}→{p}" for t, p in zip(shown["labels"], shown["predicted"])]
    return images.map_grid_figure(
        grid,
        rows,
        ["input", *(SHORT[m] for m in methods)],
        title="each method's map of the predicted class (true→predicted)",
    )


def cascade_figure(c: dict) -> dict:
    data = [
        plot.line(
            c["stages"],
            c["rho"][m],
            SHORT[m],
            color=HIGHLIGHT.get(m, plot.colour(i)),
            width=3 if m in HIGHLIGHT else 1.5,
            mode="lines+markers",
        )
        for i, m in enumerate(c["rho"])
    ]
    return plot.figure(
        data,
        "cascading randomization: ρ with the trained model's map",
        330,
        xaxis={"title": "re-initialised, cumulatively, from the top", "type": "category"},
        yaxis={"title": "Spearman ρ (signed)", "range": [-0.6, 1.05]},
    )


def cascade_maps_figure(c: dict, shown: dict | None) -> dict:
    methods = list(c["maps"])
    image = shown["images"][0] if shown else np.zeros_like(c["maps"][methods[0]][0])
    grid = [[image, *(c["maps"][m][s] for m in methods)] for s in range(len(c["stages"]))]
    return images.map_grid_figure(
        grid,
        c["stages"],
        ["input", *(SHORT[m] for m in methods)],
        title="the first image's maps, stage by stage",
        cell_px=70,
    )


def shuffled_figure(s: dict) -> dict:
    names = [SHORT[m] for m in s["rho"]]
    values = list(s["rho"].values())
    return plot.figure(
        [plot.bar(names, values, [HIGHLIGHT.get(m, "#9aa7b8") for m in s["rho"]])],
        f"shuffled labels (train {s['train_acc']:.0%}, test {s['test_acc']:.0%}): ρ with real maps",
        300,
        legend=False,
        xaxis={"type": "category"},
        yaxis={"title": "Spearman ρ", "range": [-0.6, 1.05]},
    )


def shuffled_maps_figure(s: dict, shown: dict | None) -> dict:
    methods = list(s["maps"])
    image = shown["images"][0] if shown else np.zeros_like(next(iter(s["maps"].values())))
    rows = [[image, *(shown["maps"][m][0] for m in methods)]] if shown else []
    rows.append([image, *(s["maps"][m] for m in methods)])
    titles = ["trained", "shuffled"] if shown else ["shuffled"]
    return images.map_grid_figure(
        rows,
        titles,
        ["input", *(SHORT[m] for m in methods)],
        title="the first image: real labels against shuffled",
        cell_px=70,
    )


EXPLAIN = Views(draw_explain, EXPLAIN_LAYOUT)


# ---------------------------------------------------------------- attacks

ATTACK_LAYOUT = (("accuracy", "robust accuracy"), ("robustness",), ("examples*",))


def draw_attack(run) -> dict:
    variants = run.view.get("variants", {})
    if not variants:
        return {}
    eps = run.cfg.epsilon if run.cfg is not None else 0.0
    parts = {NUMBERS: []}
    for name in variants:
        parts[NUMBERS] += [
            [f"{name}: clean", last_number(run, metric(name, "test_acc"), ".1%")],
            [f"{name}: FGSM at ε={eps:.2f}", last_number(run, metric(name, "fgsm_acc"), ".1%")],
        ]
    snapshots = lambda m: ([r["step"] for r in run.history if m in r], [r[m] for r in run.history if m in r])  # noqa: E731
    parts["accuracy"] = curves.curves_figure(
        {name: snapshots(metric(name, "test_acc")) for name in variants}, "clean test accuracy", height=260
    )
    parts["robust accuracy"] = curves.curves_figure(
        {name: snapshots(metric(name, "fgsm_acc")) for name in variants},
        f"accuracy under FGSM at ε = {eps:.2f}",
        height=260,
    )
    if any("robustness" in v for v in variants.values()):
        parts["robustness"] = robustness_figure(variants, eps)
    for name, v in variants.items():
        if "examples" in v:
            parts[f"examples {name}"] = examples_figure(v["examples"], name)
    return parts


def robustness_figure(variants: dict, eps: float) -> dict:
    data = []
    for i, (name, v) in enumerate(variants.items()):
        r = v.get("robustness")
        if not r:
            continue
        for attack, dash in (("FGSM", "solid"), ("PGD", "dash")):
            data.append(
                plot.line(
                    r["eps"],
                    r[attack],
                    f"{name}, {attack}",
                    color=plot.colour(i),
                    dash=dash,
                    mode="lines+markers",
                )
            )
    fig = plot.figure(
        data,
        "accuracy against ε (300 test digits)",
        320,
        xaxis={"title": "ε (largest change to any pixel)"},
        yaxis={"title": "accuracy", "range": [0, 1.02]},
    )
    return plot.with_marks(fig, plot.vline(eps, "ε", color="#888"))


def examples_figure(e: dict, name: str) -> dict:
    eps = max(float(e["epsilon"]), 1e-6)
    grid = [
        [img, pert / eps, att, ig0, ig1]
        for img, pert, att, ig0, ig1 in zip(
            e["images"], e["perturbation"], e["attacked"], e["ig_before"], e["ig_after"]
        )
    ]
    rows = [
        f"{t}: {b} {bc:.0%} → {a} {ac:.0%}"
        for t, b, bc, a, ac in zip(e["labels"], e["before"], e["before_conf"], e["after"], e["after_conf"])
    ]
    return images.map_grid_figure(
        grid,
        rows,
        ["image", "perturbation", "attacked", "IG before", "IG after"],
        kinds=("image", "map", "image", "map", "map"),
        title=f"{name}: {e['method']} at ε = {e['epsilon']:.2f} (true: before → after)",
        cell_px=80,
    )


ATTACK = Views(draw_attack, ATTACK_LAYOUT)
VIEWS = EXPLAIN
