"""Pages a learner acts on beyond Train and Stop, in a real browser: an uploaded text is checked
before it trains, a clicked pixel is the one explained, a drawn digit is preprocessed and
answered by every deployed variant, the Bellman tab sweeps and settles its question, a held-out
digit is scored as an anomaly, a run resumed from its checkpoint ends as the run that never
stopped, a softmax colours five classes and shows a point's gradient, a
served model answers curl and goes away with its page. Every wait is on a state."""

import json
import subprocess
import time

import numpy as np

from server import loadgen
from tests.browser import (
    IDLE,
    alert,
    assert_no_exception,
    open_page,
    train_button,
)

PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 16  # a picture named .txt


def test_a_text_upload_is_checked_and_a_good_one_trains(browser, server):
    page = open_page(browser, server, "language", {"corpus": "upload", "steps": "30"}, height=1600)
    upload = page.locator(".st-key-language-upload input[type=file]")
    upload.set_input_files(files=[{"name": "photo.txt", "mimeType": "text/plain", "buffer": PNG_BYTES}])
    page.get_by_text("photo.txt contains NUL bytes").wait_for(timeout=30_000)
    text = ("A small text to learn from, line after line.\n" * 80).encode()
    upload.set_input_files(files=[{"name": "notes.csv", "mimeType": "text/csv", "buffer": text}])
    page.get_by_text("ready to train").wait_for(timeout=30_000)  # any plain text, any extension
    train_button(page, "language").click()
    alert(page, "Done in").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    assert_no_exception(page)
    assert page.get_by_text("Ask the trained model").count() == 1
    page.close()


def test_a_clicked_pixel_is_the_one_explained(browser, server):
    """Streamlit hears clicks on points, not on a heatmap's cells: the segmentation page lays a
    transparent point on every pixel. A click there moves the sliders and the explanation."""
    page = open_page(browser, server, "segmentation", {"steps": "20"}, height=2600)
    train_button(page, "segmentation").click()
    alert(page, "Done in").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    chart = page.locator(".st-key-segmentation-pick .js-plotly-plot")
    chart.wait_for(timeout=60_000)
    chart.scroll_into_view_if_needed()
    # where pixel (row 12, column 50) of the image half is drawn, from plotly's own axes
    x, y = chart.evaluate(
        "p => { const L = p._fullLayout, r = p.getBoundingClientRect(); return ["
        "r.left + L._size.l + L.xaxis.d2p(50), r.top + L._size.t + L.yaxis.d2p(12)] }"
    )
    page.mouse.click(x, y)
    page.locator(".st-key-segmentation-row", has_text="12").wait_for(timeout=60_000)
    page.locator(".st-key-segmentation-col", has_text="50").wait_for(timeout=30_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    assert_no_exception(page)
    page.close()


def test_a_drawn_digit_is_preprocessed_and_answered_by_every_variant(browser, server):
    """The production page's canvas: a "7" drawn small in a corner reaches the server, is shown
    as the 28×28 the model sees, and every variant answers with its latency."""
    page = open_page(browser, server, "production", {"epochs": "1"}, height=2600)
    train_button(page, "production").click()
    alert(page, "Done in").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    canvas = page.locator(".st-key-production-canvas canvas")
    canvas.wait_for(timeout=60_000)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + 40)
    page.mouse.down()
    for x, y in ((120, 40), (70, 150)):
        page.mouse.move(box["x"] + x, box["y"] + y, steps=12)
    page.mouse.up()
    answers = page.locator(".st-key-production-answers", has_text="int8 dynamic")
    answers.wait_for(timeout=60_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    text = answers.inner_text()
    for variant in (
        "float32 (eager)",
        "int8 dynamic",
        "pruned 80%",
        "ONNX (onnxruntime)",
        "torch.export (.pt2)",
    ):
        assert variant in text, (variant, text)
    assert page.get_by_text("what the model sees").count() == 1
    assert_no_exception(page)
    page.close()


def test_the_bellman_tab_sweeps_and_its_question_is_settled_by_a_run(browser, server):
    page = open_page(browser, server, "reinforcement", {"bellman.sweep_ms": "100"}, height=2600)
    page.get_by_role("tab", name="Bellman backups").click()
    train_button(page, "reinforcement--bellman").click()
    alert(page, "Done in").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    assert_no_exception(page)
    page.get_by_text("horizon 1/(1 − γ)").wait_for(timeout=30_000)
    page.get_by_text("value iteration, sweep 8").first.wait_for(timeout=30_000)  # exact on a dry floor
    # predict, then run: the near exit at γ = 0.6
    page.locator(".st-key-reinforcement--bellman-q0-guess").get_by_text("the small exit, near").click()
    run_it = page.locator(".st-key-reinforcement--bellman-q0-run button")
    page.wait_for_function("b => !b.disabled", arg=run_it.element_handle(), timeout=30_000)
    run_it.click()
    page.get_by_text("Right: the small exit, near").wait_for(timeout=120_000)
    assert_no_exception(page)
    page.close()


def test_a_run_resumed_from_its_checkpoint_continues_the_curve_with_equal_weights(browser, server):
    params = {"train.epochs": "2", "train.checkpoint_epoch": "1", "train.augmentation": "crop"}
    page = open_page(browser, server, "pipeline", params, height=2400)
    train_button(page, "pipeline--train").click()
    alert(page, "Done in").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    page.get_by_text("torch.profiler: the operators that took the most time").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Resume from the checkpoint saved after epoch 1").click()
    alert(page, "Done in").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    assert_no_exception(page)
    page.get_by_text("Resumed from the checkpoint saved after epoch 1").first.wait_for(timeout=30_000)
    page.get_by_text("0.0e+00 apart").first.wait_for(timeout=30_000)  # the uninterrupted run's very weights
    page.get_by_text("the run it continues").first.wait_for(timeout=30_000)
    page.close()


def test_a_held_out_digit_is_scored_as_an_anomaly(browser, server):
    params = {"held_out": "5", "latent_dim": "8", "steps": "300", "models": "ae"}
    page = open_page(browser, server, "autoencoders", params, height=2400)
    train_button(page, "autoencoders").click()
    alert(page, "Done in").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    assert_no_exception(page)
    page.get_by_text("AE: AUC for the held-out digit").wait_for(timeout=30_000)
    page.get_by_text("finding the 5s by reconstruction error: ROC").first.wait_for(timeout=30_000)
    page.get_by_text("the test digits it rebuilds worst").first.wait_for(timeout=30_000)
    page.close()


def test_a_softmax_run_colours_its_classes_and_shows_a_points_gradient(browser, server):
    params = {"dataset": "pinwheel5", "loss": "squared_error", "epochs": "20"}
    page = open_page(browser, server, "playground", params, height=2600)
    train_button(page, "playground").click()
    alert(page, "Done in").wait_for(timeout=120_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    assert_no_exception(page)
    # the live panel's boundary chart: one band of colour per class, five classes
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')].some(p => (p.data || [])"
        ".some(t => t.type === 'heatmap' && t.zmax === 5))",
        timeout=30_000,
    )
    page.get_by_text("Logits, probabilities, and what the loss sends back").wait_for(timeout=30_000)
    page.get_by_text("∂ loss / ∂ logit").first.wait_for(timeout=30_000)
    page.close()


def curl(url: str, body_file) -> dict:
    out = subprocess.run(
        ["curl", "-s", "-X", "POST", "-H", "Content-Type: application/json", "--data", f"@{body_file}", url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_a_served_model_answers_curl_and_goes_away_with_its_page(browser, server, tmp_path):
    page = open_page(browser, server, "production", {"epochs": "1"}, height=3000)
    train_button(page, "production").click()
    alert(page, "Done in").wait_for(timeout=180_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    page.locator(".st-key-production-serve button").click()
    command = page.locator("code", has_text="curl -s -X POST")
    command.wait_for(timeout=60_000)
    url = command.inner_text().split()[-1]  # the address the page tells its learner
    digit = tmp_path / "digit.json"
    digit.write_bytes(loadgen.request_body(np.zeros((28, 28))))
    answer = curl(url, digit)
    assert len(answer["predictions"]) == 1 and len(answer["probabilities"][0]) == 10, answer
    page.wait_for_selector(IDLE, timeout=60_000)
    page.locator(".st-key-production-load-run button").click()
    page.get_by_text("Load test done").wait_for(timeout=90_000)
    assert_no_exception(page)
    page.close()
    deadline = time.time() + 90  # the session's reconnection grace, then its model goes off the air
    while "error" not in (answer := curl(url, digit)) and time.time() < deadline:
        time.sleep(1)
    assert "page that served it was closed" in answer.get("error", ""), answer
