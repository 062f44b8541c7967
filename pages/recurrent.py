"""Chapter 12 — Recurrent networks. UI only: the tasks, cells and loop are labs/recurrent.py."""

import streamlit as st

from components import page
from figures import sequences
from figures.views import recurrent as views
from labs import recurrent as lab
from labs.core import compare as core_compare

KEY = "recurrent"
cfg = page.chapter(KEY, lab, views.VIEWS)


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
    right.plotly_chart(
        sequences.attribution_over_time_figure(rows, labels, mark), key=f"{KEY}-fig-ig", theme=None
    )
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


page.results(KEY, lab, views.VIEWS, after=_after_training)
page.show_code(lab.train_cell, lab.SequenceNet, lab.memory_batch, core_compare.side_by_side)
