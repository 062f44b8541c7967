"""Chapter 10 — Tabular data & embeddings. UI only: the net and loop are labs/tabular.py, the
baselines and attributions labs/tabular_baselines.py, the CSV checks labs/tables.py."""

import dataclasses
import functools

import streamlit as st

from components import controls, live, page
from figures.views import tabular as views
from labs import tables
from labs import tabular as lab

KEY = "tabular"
UPLOAD_CAP_MB = 50  # past this the browser refuses the file; below it the lab says why (20 MB)
page.intro(KEY, "10. Tabular data & embeddings")
cfg = controls.config_controls(lab.Config, KEY)
controls.share_link((cfg, KEY))
controls.link_notices(KEY)


def read_upload():
    """The learner's CSV and target column, checked; None (with the reason) if refused."""
    box = st.container(border=True)
    file = box.file_uploader(
        "Your table: a CSV with a header row, up to 100,000 rows and 50 columns",
        key=f"{KEY}-upload",
        max_upload_size=UPLOAD_CAP_MB,
    )
    if file is None:
        box.info("Upload a CSV to train on it: numeric columns stay numbers, text columns become categories.")
        return None
    try:
        frame = page.memo(("csv", file.file_id), lambda: tables.read_csv(file.getvalue(), file.name))
    except tables.TableError as err:
        box.error(str(err))
        return None
    columns = list(frame.columns)
    target = box.selectbox(
        "Target: the column to predict",
        columns,
        columns.index(tables.default_target(frame)),
        key=f"{KEY}-target",
    )
    try:
        table = page.memo(
            ("table", file.file_id, target), lambda: tables.table_from_frame(frame, target, file.name)
        )
    except tables.TableError as err:
        box.error(str(err))
        return None
    box.caption(
        f"{len(table):,} rows; numeric: {', '.join(table.numeric) or 'none'}; categorical: "
        f"{', '.join(f'{c} ({len(table.levels[c])})' for c in table.categorical) or 'none'}; {table.task}"
        + (f" over {len(table.classes)} classes." if table.classes else ".")
    )
    return table


upload = read_upload() if cfg.data == "upload" else None
experiment = lab.EXPERIMENT
if upload is not None:  # the checked table travels with the run, never through a shared cache
    experiment = dataclasses.replace(experiment, train=functools.partial(lab.train, upload=upload))
live.run_buttons(KEY, experiment, cfg, views.VIEWS)


def _after(view) -> None:
    importance = view.view.get("importance")
    if importance:
        top = {method: max(shares, key=shares.get) for method, shares in importance.items()}
        st.caption(
            "FeatureAblation sets one feature to the average row's (a category to its mean "
            "embedding) and measures how far the MLP's prediction moves; Integrated Gradients "
            "adds up the gradients along the way from that average row; permutation importance "
            "shuffles one column and measures how much the boosted trees' validation score "
            "drops. Largest share: " + "; ".join(f"{m}: **{f}**" for m, f in top.items()) + "."
        )


page.results(KEY, lab, views.VIEWS, after=_after)
page.show_code(lab.train, lab.EmbeddingMLP, lab.sales)
