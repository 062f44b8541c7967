"""Chapter 19's model over HTTP (server/serving.py): the route answers a digit, refuses bad
requests in words, and goes away with its session; dynamic batching gathers concurrent requests
into few model calls and makes a lone request wait its window."""

import time

import numpy as np
import pytest
import torch
from starlette.applications import Starlette
from starlette.testclient import TestClient

from labs import production
from server import loadgen, serving
from server.routes import routes
from server.sessions import Held


@pytest.fixture(scope="module")
def model():
    """A digit net (untrained: what matters here is the serving, not the answers)."""
    torch.manual_seed(0)
    return production.DigitNet(32).eval()


def predictor(model):
    return production.predictor({"float32 (eager)": model})[1]


@pytest.fixture
def client():
    return TestClient(Starlette(routes=routes()), base_url="http://127.0.0.1:8501")


def digit() -> np.ndarray:
    return production.digits(0).X_test[0, 0].numpy()


def test_a_served_model_answers_a_posted_digit_as_its_own_model_does(client, model):
    token = serving.serve(serving.Endpoint(predictor(model), "float32"))
    answer = client.post(f"/_lab/serve/{token}", content=loadgen.request_body(digit()))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    sent = torch.from_numpy(np.round(digit(), 3).astype(np.float32))[None, None]  # as the JSON has it
    with torch.no_grad():
        expected = model(sent).argmax(1).item()
    assert body["predictions"] == [expected] and body["batch"] == 1
    assert abs(sum(body["probabilities"][0]) - 1) < 1e-3
    two = client.post(f"/_lab/serve/{token}", json={"images": [digit().tolist()] * 2})
    assert two.json()["predictions"] == [expected, expected]
    assert client.get(f"/_lab/serve/{token}").json()["model"] == "float32"  # how to ask it
    serving.stop_serving(token)


def test_the_onnx_file_is_served_and_answers_as_the_eager_model(client, model):
    from labs import deploy

    if not deploy.onnx_available():  # the page then serves the eager model, and says why
        assert production.predictor({"float32 (eager)": model})[0] == "float32 (eager PyTorch)"
        return
    example = torch.zeros(2, 1, 28, 28)
    session = deploy.onnx_session(deploy.onnx_file(model, example, torch.export.Dim("batch", max=64)))
    onnx = lambda x: session.run(None, {"image": x})[0]  # noqa: E731 - as served_variants has it
    variants = {"ONNX (onnxruntime)": onnx, "float32 (eager)": model}
    name, predict = production.predictor(variants, "ONNX (onnxruntime)")
    token = serving.serve(serving.Endpoint(predict, name))
    answer = client.post(f"/_lab/serve/{token}", json={"images": [digit().tolist()] * 3}).json()
    eager = production.predictor(variants, "float32 (eager)")[1](np.stack([digit()[None]] * 3))
    assert name == "ONNX (onnxruntime)" and answer["predictions"] == eager.argmax(1).tolist()
    serving.stop_serving(token)


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b"{not json", 400, "not JSON"),
        (b'{"pixels": 1}', 400, '{"image"'),
        (b'{"image": [[0.5, 0.5]]}', 400, "28 rows of 28"),
        (b'{"image": ' + str([[2.0] * 28] * 28).encode() + b"}", 400, "from 0 (background) to 1"),
        (b'{"images": []}', 400, "1 to 16 images"),
        (b'{"image": "' + b"x" * 300_000 + b'"}', 413, "KB a request"),
    ],
)
def test_a_bad_request_is_refused_in_words(client, model, body, status, words):
    token = serving.serve(serving.Endpoint(predictor(model), "float32"))
    answer = client.post(f"/_lab/serve/{token}", content=body)
    assert answer.status_code == status and words in answer.json()["error"], answer.text
    serving.stop_serving(token)


def test_the_address_goes_away_with_its_session_and_its_time(client, model):
    held = Held("a-session")
    held.endpoints["production"] = serving.serve(serving.Endpoint(predictor(model), "float32"))
    path = f"/_lab/serve/{held.endpoints['production']}"
    assert client.post(path, content=loadgen.request_body(digit())).status_code == 200
    held.end()  # the browser did not come back within its grace
    gone = client.post(path, content=loadgen.request_body(digit()))
    assert gone.status_code == 404 and "page that served it was closed" in gone.json()["error"]
    late = serving.serve(serving.Endpoint(predictor(model), "float32", seconds=0.0))
    time.sleep(0.01)
    assert client.post(f"/_lab/serve/{late}", content=loadgen.request_body(digit())).status_code == 404
    assert client.post("/_lab/serve/never-made", content=b"{}").status_code == 404


def load(endpoint: serving.Endpoint, clients: int, each: int) -> tuple[list[float], int]:
    return loadgen.in_process(endpoint, digit()[None, None].astype(np.float32), clients, each)


@pytest.mark.lesson
def test_batching_gathers_concurrent_requests_and_makes_a_lone_one_wait(model, lesson):
    # 32 clients at once: one model call per request without batching, a few per batch with it
    _, calls_off = load(serving.Endpoint(predictor(model), "off", serving.Batching(1, 0)), 32, 10)
    _, calls_on = load(serving.Endpoint(predictor(model), "on", serving.Batching(32, 5)), 32, 10)
    assert calls_off == 320
    per_call = 320 / calls_on
    lesson.expect("serving, 32 clients: requests answered per model call, batching on", per_call, ">", 8)
    # one client: every request waits out the window for companions that never come
    alone_off, _ = load(serving.Endpoint(predictor(model), "off", serving.Batching(1, 0)), 1, 30)
    alone_on, _ = load(serving.Endpoint(predictor(model), "on", serving.Batching(32, 20)), 1, 30)
    assert np.median(alone_on) >= 20  # the window, by construction
    lesson.expect(
        "serving, 1 client: median ms with a 20 ms window minus without",
        float(np.median(alone_on) - np.median(alone_off)), ">", 15,
    )  # fmt: skip
