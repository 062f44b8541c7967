"""Serve a trained model over HTTP from the lab itself (server/serving.py), show the `curl` that
asks it, and drive it with a bounded load test on loopback, drawn live (server/loadgen.py).
Model-free: the page hands over a function that builds the predictor."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import numpy as np
import streamlit as st
from streamlit import config

from figures import curves
from server import loadgen, serving
from server.routes import base_path
from server.sessions import serve_model, served_model

ROUTE_COOKIE = "dllab_route"  # nginx's sticky route between replicas


def http_endpoint(
    key: str, predictor: Callable[[str], tuple[str, Callable]], servable: tuple, example: np.ndarray
) -> None:
    """The section: which model, batching settings, Serve, the address and its curl, the load
    test. `predictor(which)` builds the served function for one of `servable`."""
    st.subheader("Serve it over HTTP")
    st.caption(
        "The lab serves your model on an address of its own while this page is open (at most "
        "the run time limit). Dynamic batching gathers requests that arrive within the window "
        "into one call of the model: more answers a second under load, a little longer for each "
        "when requests come one at a time. Max batch 1 turns it off. Over HTTP each request "
        "also pays for its connection, its JSON and the server's own handling, which no batching "
        "shares: batching pays where the model's call is a large part of a request."
    )
    which_column, left, right = st.columns([1, 1, 1])
    which = which_column.selectbox("Model to serve", servable, key=f"{key}-served")
    max_batch = left.slider("Max batch", 1, 64, 16, key=f"{key}-max-batch")
    window = right.slider("Batching window (ms)", 0.0, 20.0, 2.0, 0.5, key=f"{key}-window")
    batching = serving.Batching(max_batch, window)
    on_air = served_model(key)
    label = "Serve this model over HTTP" if on_air is None else "Serve the model again (a new address)"
    if st.button(label, key=f"{key}-serve"):
        name, predict = predictor(which)
        serve_model(key, serving.Endpoint(predict, name, batching))
        on_air = served_model(key)
    if on_air is None:
        return
    token, endpoint = on_air
    endpoint.batching = batching  # the sliders apply to the next batch
    path = serving.path_of(token, base_path())
    body = loadgen.request_body(example)
    st.markdown(f"**{endpoint.name}**, answering at `{path}`. Ask it from a terminal:")
    ask = f"curl -s -X POST -H 'Content-Type: application/json'{_route()} --data @digit.json"
    st.code(f"{ask} {_origin()}{path}", language="bash")
    st.download_button(
        "Download digit.json (a test digit)", body, "digit.json", "application/json",
        key=f"{key}-digit-json", on_click="ignore",
    )  # fmt: skip
    _load_test(key, path, body, endpoint)


def _origin() -> str:
    """This page's scheme and host as the browser reached it (through a proxy too)."""
    parts = urlsplit(st.context.url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "http://localhost:8501"


def _route() -> str:
    """Behind the replicas' nginx (deploy/nginx/dllab-replicas.conf) the model lives in one
    replica: the browser's route cookie takes curl there too."""
    route = st.context.cookies.get(ROUTE_COOKIE)
    return f" -b {ROUTE_COOKIE}={route}" if route else ""


def _load_test(key: str, path: str, body: bytes, endpoint: serving.Endpoint) -> None:
    st.markdown("**Load test** (from this server, on loopback)")
    left, right = st.columns(2)
    concurrency = left.slider("Clients at once", 1, loadgen.MAX_CONCURRENCY, 16, key=f"{key}-clients")
    requests = right.slider("Requests", 100, loadgen.MAX_REQUESTS, 1000, 100, key=f"{key}-requests")
    state = f"{key}-load"
    if st.button("Run the load test", key=f"{key}-load-run"):
        port = int(config.get_option("server.port"))
        depth = lambda: endpoint.depth  # noqa: E731 - read by the load test's windows
        st.session_state[state] = loadgen.start(port, path, body, concurrency, requests, depth)
    load = st.session_state.get(state)
    if load is not None and load.done:
        _draw(key, load)  # drawn once: an ended test polls nothing
    elif load is not None:
        _watch(key, load)


@st.fragment(run_every=0.5)
def _watch(key: str, load: loadgen.Load) -> None:
    """The load test's windows, redrawn twice a second until it ends (then the page once)."""
    _draw(key, load)
    if load.done:
        st.rerun()


def _draw(key: str, load: loadgen.Load) -> None:
    windows = load.windows
    ts = [w["t"] for w in windows]
    charts = (  # (part, title, {line: window field})
        ("latency", "latency (ms)", {"p50": "p50 ms", "p99": "p99 ms"}),
        ("throughput", "throughput", {"answers per second": "per second"}),
        ("depth", "queue depth", {"waiting requests": "queue depth"}),
    )
    for column, (part, title, lines) in zip(st.columns(3), charts):
        series = {line: (ts, [w[field] for w in windows]) for line, field in lines.items()}
        figure = curves.curves_figure(series, title, x_title="seconds", height=260)
        column.plotly_chart(figure, key=f"{key}-load-{part}", theme=None)
    s = load.totals
    words = (
        f"{s['answered']:.0f} of {load.requests} answered, {load.concurrency} clients at once: "
        f"p50 {s['p50 ms']:.1f} ms, p99 {s['p99 ms']:.1f} ms, {s['per second']:.0f} answers a second."
    )
    if load.errors:
        st.error(f"{words} Errors: {', '.join(sorted(set(load.errors)))[:300]}")
    elif load.done:
        st.success(f"Load test done: {words}")
    else:
        st.info(f"Load test running: {words}")
