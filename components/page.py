"""What every chapter page shows around its lab: the intro, "Show the code", downloads and
the "predict, then run" questions."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path

import pandas as pd
import streamlit as st

import chapters
from components import controls, live
from components.keys import state_key, widget_key
from figures.views import Views
from labs.core.contract import Experiment
from labs.core.questions import Question
from labs.core.runner import RunView
from labs.core.snapshot import weights_bytes
from server.analysis import GATE, Busy
from server.sessions import current_run, start_run

CONTENT = Path(__file__).resolve().parents[1] / "content"


def chapter(slug: str, lab, views: Views):
    """The top of a one-experiment chapter page: explanation, controls generated from the
    lab's Config (read from a shared link, with notices), share link, Train and Stop.
    Returns the Config the controls describe."""
    intro(slug, chapters.by_slug(slug).label)
    cfg = controls.config_controls(lab.Config, slug)
    controls.share_link((cfg, slug))
    controls.link_notices(slug)
    live.run_buttons(slug, lab.EXPERIMENT, cfg, views)
    return cfg


def results(key: str, lab, views: Views, after=None, **show_options) -> RunView | None:
    """Below the controls of a one-experiment page: the run (live, or how it ended), `after(view)`
    for what needs its weights, its downloads, then the "predict, then run" questions."""
    view = live.show(key, views, **show_options)
    if view is not None and view.state_dict is not None and after is not None:
        after(view)
    if view is not None:
        downloads(view, key)
    questions(lab.QUESTIONS, key, lab.EXPERIMENT, views)
    return view


def intro(stem: str, title: str) -> None:
    """The chapter's title and its explanation (content/<stem>.md, with LaTeX where it helps)."""
    st.title(title)
    text = (CONTENT / f"{stem}.md").read_text(encoding="utf-8")
    lead, _, rest = text.partition("\n\n")
    st.markdown(lead)
    if rest:
        with st.expander("How it works", expanded=False):
            st.markdown(rest)


def memo(key: tuple, compute):
    """compute() once per key for this session (explanations of a finished run): a rerun
    after each widget change should not redo Integrated Gradients. Keeps the last 16."""
    cache = st.session_state.setdefault(state_key("app", "memo"), {})
    if key not in cache:
        if len(cache) >= 16:
            cache.pop(next(iter(cache)))
        try:  # the server's cores are shared: its analyses take turns (server/analysis.py)
            cache[key] = GATE.run(compute)
        except Busy as busy:
            st.warning(str(busy), icon="⏳")
            st.stop()
    return cache[key]


def cnn_from_cnn_chapter():
    """(Config, weights) of the CNN this session trained on 28×28 digits in the CNN chapter, for
    the chapters that explain or deploy it; None if there is none (not yet, an MLP, 8×8 digits)."""
    run = current_run("convnets")
    view = run.view() if run is not None else None
    if view is None or view.alive or view.state_dict is None:
        return None
    c = view.cfg
    return (c, view.state_dict) if c.model == "cnn" and c.dataset in ("mnist_subset", "mnist") else None


def with_cnn_from_cnn_chapter(experiment: Experiment, cfg, doing: str, unused: str) -> Experiment:
    """The experiment Train starts: as it is, or, when the learner chose the "CNN chapter"
    model and has trained one there, its loop handed that CNN (`pretrained=`) to `doing` it."""
    if cfg.model != "CNN chapter":
        return experiment
    pretrained = cnn_from_cnn_chapter()
    if pretrained is None:
        st.info(
            "No CNN trained on 28×28 digits in the CNN chapter in this session (an MLP, or 8×8 "
            "digits, will not do): Train will train one on this page instead."
        )
        return experiment
    c = pretrained[0]
    st.caption(
        f"{doing} your CNN from the CNN chapter: {c.conv_layers} conv layers from {c.channels} "
        f"channels, trained {c.epochs} epochs on {c.dataset}. {unused} set here are not used."
    )
    train = experiment.train.func if isinstance(experiment.train, functools.partial) else experiment.train
    return dataclasses.replace(experiment, train=functools.partial(train, pretrained=pretrained))


def show_code(*functions) -> None:
    with st.expander("Show the code"):
        for fn in functions:
            st.code(source_of(fn), language="python")


@functools.cache
def source_of(obj) -> str:
    """Source text, read once per process. For a class, inspect parses its whole module with
    `ast` on every call: milliseconds per rerun, and CPython 3.11 can raise "AST constructor
    recursion depth mismatch" when two script threads parse at once."""
    return inspect.getsource(obj)


def downloads(view: RunView | None, stem: str) -> None:
    """Weights (.pt) and metrics (.csv) of a finished or stopped run."""
    if view is None or view.alive or not view.history:
        return
    left, right = st.columns(2)
    if view.state_dict is not None:
        left.download_button(
            "Download weights (.pt)",
            weights_bytes(view.state_dict, view.cfg),
            f"{stem}-{view.id}.pt",
            key=widget_key(stem, "dl-pt"),
            on_click="ignore",
        )
    right.download_button(
        "Download metrics (.csv)",
        pd.DataFrame(view.history).to_csv(index=False),
        f"{stem}-{view.id}.csv",
        key=widget_key(stem, "dl-csv"),
        on_click="ignore",
    )


def questions(items: list[Question], key: str, experiment: Experiment, views: Views) -> None:
    """Each question: pick a prediction, run the experiment that settles it, see who was right."""
    st.subheader("Predict, then run")
    for i, q in enumerate(items):
        qkey = widget_key(key, f"q{i}")
        with st.container(border=True):
            guess = st.radio(q.prompt, q.options, index=None, key=widget_key(qkey, "guess"), horizontal=True)
            st.button(
                "Run it",
                key=widget_key(qkey, "run"),
                disabled=guess is None,
                on_click=_run_question,
                args=(q, qkey, key, experiment, views),
            )
            _verdict(q, qkey, key, guess)


def _run_question(q: Question, qkey: str, key: str, experiment: Experiment, views: Views) -> None:
    cfg = dataclasses.replace(controls.saved_config(key), **q.settings)
    for name, value in q.settings.items():  # the sidebar shows the settings that answer it
        controls.set_control(type(cfg), key, name, value)
    st.session_state[state_key(qkey, "run_id")] = start_run(key, experiment, cfg, views).id


def _verdict(q: Question, qkey: str, key: str, guess: str | None) -> None:
    run = current_run(key)
    if run is None or st.session_state.get(state_key(qkey, "run_id")) != run.id:
        return
    view = run.view()
    if view.alive:
        st.caption("The run that answers this is training…")
        return
    answer, evidence = q.outcome(view)
    if guess == answer:
        st.success(f"Right: {answer}. {evidence} {q.why}")
    else:
        st.error(f"The run says {answer}, not {guess}. {evidence} {q.why}")
