"""Chapter 23 — The training pipeline, and where the time goes. UI only: the loop is
labs/pipeline.py, its data path labs/pipeline_data.py, the sweeps labs/pipeline_sweeps.py, what
they show figures/views/pipeline.py."""

import dataclasses
import functools

import streamlit as st

import chapters
from chapters import run_key
from components import controls, live, page
from figures.views import pipeline as views
from labs import pipeline as lab
from labs import pipeline_data, pipeline_sweeps

PAGE = "pipeline"
TRAIN, SWEEP = run_key(PAGE, "train"), run_key(PAGE, "sweep")
page.intro(PAGE, chapters.by_slug(PAGE).label)
train_tab, sweep_tab = st.tabs(["Where the time goes", "Sweeps: batch size, workers"])


def resumed_experiment(view):
    """This run's loop again, started from its checkpoint, told what the uninterrupted run did."""
    reference = {"final": view.state_dict["model"], "curve": view.series("train_loss")}
    train = functools.partial(lab.train, resume=view.state_dict["checkpoint"], reference=reference)
    return dataclasses.replace(lab.EXPERIMENT, train=train)


def _resume(view) -> None:
    if view is None or view.alive or not view.state_dict or "checkpoint" not in view.state_dict:
        return
    epoch = view.state_dict["checkpoint"]["epoch"]
    live.start_button(
        TRAIN,
        f"Resume from the checkpoint saved after epoch {epoch}",
        resumed_experiment(view),
        view.cfg,
        views.TRAIN,
        help="A new run that loads the checkpoint (weights, optimizer, random states) and trains "
        "the remaining epochs; its curve is drawn over this one's.",
    )


with train_tab:
    t_cfg = controls.config_controls(lab.Config, TRAIN, st.container())
    controls.link_notices(TRAIN)
    live.run_buttons(TRAIN, lab.EXPERIMENT, t_cfg, views.TRAIN)
    train_view = live.show(TRAIN, views.TRAIN)
    _resume(train_view)
    page.downloads(train_view, TRAIN)
    page.questions(lab.QUESTIONS, TRAIN, lab.EXPERIMENT, views.TRAIN)

with sweep_tab:
    st.markdown(
        "Each sweep measures every setting in one run, one after the other, so what counts is "
        "how the settings compare on this server, not its absolute speed."
    )
    s_cfg = controls.config_controls(pipeline_sweeps.SweepConfig, SWEEP, st.container())
    controls.link_notices(SWEEP)
    live.run_buttons(SWEEP, lab.SWEEP, s_cfg, views.SWEEP)
    page.downloads(live.show(SWEEP, views.SWEEP), SWEEP)
    page.questions(lab.SWEEP_QUESTIONS, SWEEP, lab.SWEEP, views.SWEEP)

controls.share_link((t_cfg, TRAIN), (s_cfg, SWEEP))
page.show_code(
    pipeline_data.Digits,
    pipeline_data.loader,
    lab.train,
    lab.save,
    lab.restore,
    pipeline_sweeps._workers_point,
)
