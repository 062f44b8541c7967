"""The lab's own HTTP routes, behind Streamlit's gzip middleware as in the app: plotly.js is
compressed once per process, not for every request; the status route answers operators only."""

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient
from streamlit.web.server.starlette.starlette_gzip_middleware import SelectiveGZipMiddleware

from server import routes

APP = Starlette(routes=routes.routes(), middleware=[Middleware(SelectiveGZipMiddleware, minimum_size=500)])


def test_plotly_js_is_compressed_once_and_arrives_whole(monkeypatch):
    compressed = []
    real = routes.gzip.compress
    monkeypatch.setattr(routes.gzip, "compress", lambda data, **kw: compressed.append(1) or real(data, **kw))
    routes.plotly_gzipped.cache_clear()
    client = TestClient(APP)
    for _ in range(3):
        got = client.get("/_lab/plotly.min.js", headers={"accept-encoding": "gzip"})
        assert got.status_code == 200 and got.headers["content-encoding"] == "gzip"
        assert got.content == routes.PLOTLY_JS.read_bytes()  # decoded once: not compressed twice
    assert len(compressed) == 1
    plain = client.get("/_lab/plotly.min.js", headers={"accept-encoding": "identity"})
    assert plain.content == routes.PLOTLY_JS.read_bytes()


@pytest.mark.parametrize(
    "client_host, headers, allowed",
    [
        ("127.0.0.1", {}, True),  # an operator on the machine
        ("127.0.0.1", {"x-forwarded-for": "203.0.113.9"}, False),  # anyone, through the proxy
        ("203.0.113.9", {}, False),  # anyone, straight
        ("203.0.113.9", {"authorization": "Bearer s3cret"}, True),  # the operator's token
        ("203.0.113.9", {"authorization": "Bearer wrong"}, False),
    ],
)
def test_the_status_route_answers_operators_only(monkeypatch, client_host, headers, allowed):
    monkeypatch.setenv("DLLAB_STATUS_TOKEN", "s3cret")
    got = TestClient(APP, client=(client_host, 40000)).get("/_lab/status", headers=headers)
    assert got.status_code == (200 if allowed else 403)
    if allowed:
        assert set(got.json()) == {"workers", "runs", "channels"}
