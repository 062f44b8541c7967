"""Chapter 12 — Recurrent networks. UI only: the tasks, cells and loop are labs/recurrent.py."""

import streamlit as st

from components import compare, live, page, sequences
from labs import recurrent as lab
from labs.core import compare as core_compare

KEY = "recurrent"
cfg = page.chapter(KEY, lab)


def draw(view):
    infos = compare.variants(view)
    names = list(infos)
    if not names or not view.history:
        return
    memory = view.cfg.task == "memory"
    score = "test_acc" if memory else "test_mse"
    left, right = st.columns(2)
    left.plotly_chart(
        compare.compare_curves_figure(view.history, names, ["train_loss"], "training loss", log_y=True),
        key=f"{KEY}-fig-loss",
    )
    title = "accuracy with the mark at the full span" if memory else "test MSE against the clean future"
    right.plotly_chart(
        compare.compare_curves_figure(view.history, names, [score], title, log_y=not memory),
        key=f"{KEY}-fig-score",
    )
    left, right = st.columns(2)
    if memory:
        curves = {n: (i["spans"], i["acc_by_span"]) for n, i in infos.items() if "spans" in i}
        left.plotly_chart(sequences.by_span_figure(curves, 1 / lab.SYMBOLS), key=f"{KEY}-fig-span")
    else:
        shown = {n: i for n, i in infos.items() if "forecast" in i}
        if shown:
            first = next(iter(shown.values()))["forecast"]
            preds = {n: i["forecast"]["pred"][0] for n, i in shown.items()}
            left.plotly_chart(
                sequences.forecast_figure(first["past"][0], first["truth"][0], preds), key=f"{KEY}-fig-fc"
            )
            baseline = first.get("persistence_mse", 0)
            left.caption(f"Repeating the last value (tomorrow = today) scores MSE {baseline:.3f}.")
    grads = {n: i["grad_by_step"] for n, i in infos.items() if "grad_by_step" in i}
    right.plotly_chart(sequences.gradient_by_step_figure(grads), key=f"{KEY}-fig-grad")
    st.caption("Each cell's hidden state over the first test sequence (memory: the mark is at step 0).")
    compare.show_variants(view, lambda name, i, info, _: _hidden(i, info, memory))
    if view.state_dict is not None:
        _after_training(view)
    page.downloads(view, KEY)


def _hidden(i, info, memory):
    if "hidden" in info:
        figure = sequences.hidden_heatmap_figure(info["hidden"], 0 if memory else None)
        st.plotly_chart(figure, key=f"{KEY}-fig-hidden-{i}")


def _after_training(view):
    c = view.cfg
    st.subheader("One test sequence, explained")
    left, right = st.columns([1, 3])
    index = left.number_input("Test sequence", 0, lab.PROBE - 1, 0, key=f"{KEY}-seq")
    x, target = lab.example(c, index)
    labels, mark = lab.step_labels(c, x)
    if c.task == "memory":
        which = int(target)
        left.caption(
            f"The marked symbol is **{lab.SYMBOL_NAMES[which]}**, {len(labels) - 1 - mark} steps back."
        )
    else:
        which = left.slider("Explain forecast step", 1, c.horizon, 1, key=f"{KEY}-h") - 1
    models = {
        lab.label(cell): page.memo(("model", view.id, cell), lambda cell=cell: lab.load_model(c, cell, sd))
        for cell in c.cells
        if (sd := view.state_dict.get(lab.label(cell))) is not None
    }
    explained = {
        name: page.memo(("ig", view.id, name, index, which), lambda m=m: lab.explain(c, m, x, which))
        for name, m in models.items()
    }
    rows = {}
    for name, e in explained.items():
        rows[f"{name} · IG"], rows[f"{name} · occlusion"] = e["ig"], e["occlusion"]
    right.plotly_chart(sequences.attribution_over_time_figure(rows, labels, mark), key=f"{KEY}-fig-ig")
    said = []
    for name, e in explained.items():
        out = e["output"]
        answer = lab.SYMBOL_NAMES[int(out.argmax())] if c.task == "memory" else f"{out[which]:+.2f}"
        said.append(
            f"**{name}** answers {answer}; IG's sum misses the score change "
            f"{e['gap']:.2f} by {e['delta']:.2f}"
        )
    right.markdown(
        "  \n".join(said) + "  \nBlue pushed towards this answer, red against it. A large IG delta means the "
        "integral crossed a cliff (a gate snapping shut) between its samples: trust occlusion's row there."
    )


live.live(KEY, draw)
page.questions(lab.QUESTIONS, KEY, lab.EXPERIMENT)
page.show_code(lab.train_cell, lab.SequenceNet, lab.memory_batch, core_compare.side_by_side)
