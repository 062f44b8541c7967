"""The live socket, spoken to as a browser and as a proxy would: it accepts the pages Streamlit's
own socket accepts (so the common nginx recipes work), takes the run's token as its first
message, and refuses in words: another site's page, another browser, a gone run, too many tabs,
anything but "ready" after the token."""

import json
import os

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

from server.admission import MAX_VIEWERS, origin_refusal
from server.channel import HUB, owner_of
from server.routes import XSRF_COOKIE, routes

BROWSER = os.urandom(16)
COOKIE = generate_xsrf_token_string(BROWSER)


@pytest.fixture
def client():
    return TestClient(Starlette(routes=routes()), base_url="http://127.0.0.1:8501")


@pytest.fixture
def channel():
    return HUB.open(None, owner_of(COOKIE))


def answer(
    client, token: str, host: str = "127.0.0.1:8501", origin: str = "http://127.0.0.1:8501", cookie=COOKIE
):
    """The live socket's first answer to a page that sends `token`: a frame's parts or a refusal."""
    headers = {"host": host, "origin": origin}
    if cookie:
        headers["cookie"] = f"{XSRF_COOKIE}={cookie}"
    with client.websocket_connect("/_lab/live", headers=headers) as ws:
        ws.send_text(token)
        ws.send_text("ready")
        message = ws.receive()
    return json.loads(message.get("text") or message["bytes"])


def test_the_owner_naming_its_token_gets_the_idle_status(client, channel):
    assert answer(client, channel.token)["parts"]["status"]["state"] == "idle"


@pytest.mark.parametrize(
    "host, origin",
    [
        ("127.0.0.1:8501", "http://127.0.0.1:8501"),  # straight to Streamlit
        ("127.0.0.1", "http://127.0.0.1:8080"),  # nginx `Host $host` on port 8080: the port is dropped
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),  # nginx `Host $http_host`
        ("127.0.0.1:8501", "http://127.0.0.1:8080"),  # nginx without a Host line: the upstream's
    ],
)
def test_the_common_proxy_recipes_are_accepted(client, channel, host, origin):
    assert "parts" in answer(client, channel.token, host, origin)


def test_another_sites_page_is_refused_in_words(client, channel):
    got = answer(client, channel.token, "lab.example.edu", "https://evil.example")
    assert got["status"] == 403 and "does not recognise this page's address" in got["refused"]
    assert "$http_host" in got["refused"]  # what the operator can do about it


def test_a_forwarded_host_counts_only_behind_a_trusted_proxy(monkeypatch):
    headers = {
        "host": "10.0.0.5:8501",
        "origin": "https://lab.example.edu",
        "x-forwarded-host": "lab.example.edu",
    }
    assert origin_refusal(headers) is not None  # anyone can send X-Forwarded-Host
    monkeypatch.setenv("DLLAB_TRUSTED_PROXY", "1")
    assert origin_refusal(headers) is None


def test_another_browser_and_a_missing_cookie_are_refused(client, channel):
    other = generate_xsrf_token_string(os.urandom(16))
    assert answer(client, channel.token, cookie=other)["status"] == 403
    assert answer(client, channel.token, cookie=None)["status"] == 403  # XSRF is on: the cookie is required


def test_a_wrong_or_oversized_token_is_told_the_run_is_gone(client, channel):
    assert answer(client, channel.token[:-4] + "AAAA")["status"] == 404
    assert answer(client, "x" * 10_000)["status"] == 404


def test_a_run_shown_in_too_many_tabs_refuses_one_more(client, channel):
    opened = []
    try:
        for _ in range(MAX_VIEWERS):
            ws = client.websocket_connect("/_lab/live", headers={"cookie": f"{XSRF_COOKIE}={COOKIE}"})
            opened.append(ws.__enter__())
            opened[-1].send_text(channel.token)
            opened[-1].send_text("ready")
            opened[-1].receive()
        assert answer(client, channel.token)["status"] == 429
    finally:
        for ws in opened:
            ws.close()


def test_anything_but_ready_after_the_token_closes_the_socket(client, channel):
    with client.websocket_connect("/_lab/live", headers={"cookie": f"{XSRF_COOKIE}={COOKIE}"}) as ws:
        ws.send_text(channel.token)
        ws.send_text("ready")
        ws.receive()  # the idle status
        ws.send_text("x" * 100_000)
        assert ws.receive() == {"type": "websocket.close", "code": 1008, "reason": ""}


def test_a_socket_under_another_base_path_is_not_served(client):
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/elsewhere/_lab/live") as ws:
        ws.receive()
    assert closed.value.code == 4404
