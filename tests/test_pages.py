"""Every registered page runs in AppTest, trains a small run to the end, and shows no exception.

The page list comes from the chapter registry, so a new chapter is tested without editing this.
Runs are driven on the runner's thread here (AppTest is one process), by the same driver as in a
worker process (labs/core/driver.py); the browser suite covers worker processes.
"""

import os
import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from chapters import CHAPTERS, by_part, by_slug

APP = str(Path(__file__).resolve().parents[1] / "pages" / "navigation.py")
os.environ["DLLAB_EXECUTOR"] = "thread"  # also conftest's default


def open_page(chapter, params=None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.switch_page(chapter.page)
    for k, v in (params if params is not None else chapter.smoke).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def wait_until_ended(at: AppTest, timeout: float = 240, ended_before: int = 0) -> None:
    """Rerun (as the fragment's timer would) until the status shows how the run ended: one more
    "Done" than the `ended_before` runs of the page's other experiments showed."""
    end = time.time() + timeout
    while time.time() < end:
        time.sleep(0.3)
        at.run()
        if len(at.success) > ended_before or at.error or any("Stopped" in w.value for w in at.warning):
            return
    raise AssertionError("the run did not end in time")


def shown_text(elements) -> str:
    """What markdown elements show: their source with its backslash escapes undone."""
    return re.sub(r"\\(.)", r"\1", " ".join(e.value for e in elements))


def test_a_link_cannot_put_a_link_an_image_or_coloured_text_on_a_page():
    chapter = next(c for c in CHAPTERS if c.slug == "playground")
    bait = "[Fix your run](http://evil.example) ![x](http://track.example/p.png) :red[boo] $x$"
    at = open_page(chapter, {"activation": bait})
    source = " ".join(w.value for w in at.warning)
    for markup in ("[", "](", "![", ":red[", "$"):  # each only ever as escaped text
        assert markup not in re.sub(r"\\.", "", source), markup
    assert "Activation: '[Fix your run](http://evil.example) ![" in shown_text(at.warning)  # as typed, cut


def test_home_page_maps_every_chapter():
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown) + " ".join(i.value for i in at.info)
    assert "Hardware" in text
    labels = [link.proto.label for link in at.get("page_link")]
    # part by part, in the course's order within each (a later chapter joins its part: 21 after 14)
    assert labels == [f"**{c.label}**" for chapters in by_part().values() for c in chapters]
    assert sorted(labels) == sorted(f"**{c.label}**" for c in CHAPTERS)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.slug)
def test_every_experiment_trains_without_an_exception(chapter):
    at = open_page(chapter)
    for done, key in enumerate(chapter.run_keys):
        at.button(key=f"{key}-train").click().run()
        wait_until_ended(at, ended_before=done)  # each tab's run, to its end and its final views
        assert not at.exception, at.exception
        assert not at.error, [e.value for e in at.error]
        assert len(at.success) > done, f"{key}: no 'Done' status"
    assert len(at.get("plotly_chart")) >= 2


def test_a_link_with_bad_values_is_clamped_with_a_visible_notice():
    chapter = next(c for c in CHAPTERS if c.slug == "playground")
    at = open_page(chapter, {"units": "999", "activation": "banana", "epochs": "-5"})
    notice = shown_text(at.warning)
    assert "adjusted" in notice and "Units per layer" in notice and "banana" in notice
    assert at.slider(key="playground-units").value == 16
    assert at.selectbox(key="playground-activation").value == "relu"


def test_a_softmax_run_shows_a_points_logits_probabilities_and_gradient():
    chapter = next(c for c in CHAPTERS if c.slug == "playground")
    at = open_page(chapter, {"dataset": "spiral3", "loss": "squared_error", "epochs": "10"})
    at.button(key="playground-train").click().run()
    wait_until_ended(at)
    assert not at.exception, at.exception
    charts = {c.proto.id: c for c in at.get("plotly_chart")}
    assert len(charts) >= 5  # the live views, the attribution and three bar charts
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "p − y" in text and "The point's label is" in text
    assert "P(" in " ".join(m.label for m in at.metric)


def test_predict_then_run_checks_the_prediction_against_the_run():
    chapter = next(c for c in CHAPTERS if c.slug == "playground")
    at = open_page(chapter, {"epochs": "30"})
    at.radio(key="playground-q0-guess").set_value("yes").run()
    at.button(key="playground-q0-run").click().run()
    wait_until_ended(at)
    verdicts = [e.value for e in at.error] + [s.value for s in at.success]
    assert any("The run says no" in v for v in verdicts), verdicts  # a line cannot fit the spiral
    assert at.slider(key="playground-hidden_layers").value == 0  # the controls show the settings


def test_each_experiment_of_a_multi_experiment_page_reads_its_own_link_settings():
    chapter = next(c for c in CHAPTERS if c.slug == "optimizers")
    at = open_page(chapter, {"surface.learning_rate": "99", "net.schedule": "sideways"})
    notice = shown_text(at.warning)
    assert "Learning rate: 99 is outside" in notice and "sideways" in notice
    assert at.select_slider(key="optimizers--surface-learning_rate").value == 1.0
    assert at.selectbox(key="optimizers--net-schedule").value == "constant"


def test_a_bad_expression_gets_a_message_and_the_page_keeps_working():
    chapter = next(c for c in CHAPTERS if c.slug == "autograd")
    at = open_page(chapter)
    at.text_input(key="autograd-expr").set_value("sin x").run()
    assert not at.exception
    assert any("needs parentheses: sin(x)" in e.value for e in at.error)
    at.text_input(key="autograd-expr").set_value("x^3").run()
    assert not at.error and not at.exception
    assert any("Largest difference between the two derivatives" in c.value for c in at.caption)


def test_a_preset_sets_the_controls_it_names():
    chapter = next(c for c in CHAPTERS if c.slug == "initialization")
    at = open_page(chapter)
    at.button(key="initialization-preset-5").click().run()  # Healthy: ReLU + Kaiming
    assert at.selectbox(key="initialization-activation").value == "relu"
    assert at.selectbox(key="initialization-init").value == "kaiming"


@pytest.mark.parametrize(
    "slug, key, bad, message, good",
    [
        ("language", "language-prompt", "snow ☃", "never saw '☃'", "def f(self"),
        ("attention", "attention-typed", "12x4", "Type digits only", "2718"),
    ],
)
def test_a_bad_typed_prompt_gets_a_message_and_a_good_one_is_answered(slug, key, bad, message, good):
    chapter = next(c for c in CHAPTERS if c.slug == slug)
    at = open_page(chapter)
    at.button(key=f"{slug}-train").click().run()
    wait_until_ended(at)
    at.text_input(key=key).set_value(bad).run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    at.text_input(key=key).set_value(good).run()
    assert not at.error and not at.exception
    assert len(at.get("plotly_chart")) >= 4


def test_the_cnn_trained_in_the_cnn_chapter_is_explained_and_deployed_on_request():
    at = open_page(by_slug("convnets"), {"dataset": "mnist_subset", "epochs": "1", "train_size": "500"})
    at.button(key="convnets-train").click().run()
    wait_until_ended(at)
    for slug, params, key, doing in (
        (
            "interpretability",
            {"explain.model": "CNN chapter", "explain.shuffled_epochs": "0"},
            "interpretability--explain",
            "Explaining",
        ),
        ("production", {"model": "CNN chapter"}, "production", "Deploying"),
    ):
        at.switch_page(by_slug(slug).page)
        for k, v in params.items():
            at.query_params[k] = v
        at.run()
        assert any(f"{doing} your CNN from the CNN chapter" in c.value for c in at.caption), slug
        at.button(key=f"{key}-train").click().run()
        # the run's note says whose CNN it was once it has ended (AppTest sessions share runs,
        # so another test's "Done" may be on this page already: wait for this run's own words)
        end = time.time() + 240
        while not any(f"{doing} your CNN" in i.value for i in at.info) and time.time() < end:
            time.sleep(0.3)
            at.run()
        assert not at.exception, at.exception
        assert not at.error, [e.value for e in at.error]
        assert any(f"{doing} your CNN" in i.value for i in at.info), [i.value for i in at.info]
