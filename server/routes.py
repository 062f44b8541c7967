"""The lab's own routes beside Streamlit's: plotly.js from the installed plotly package (offline,
cached by the browser), and the live WebSocket (who may open it: server/admission.py).

Streamlit does not prefix custom routes with `server.baseUrlPath`, so each route is also
mounted under any prefix and answers only when the prefix is the configured one. Paths under
/_stcore/, /media/, /component/ and /static/ are Streamlit's own.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hmac
import json
import logging
import os
from pathlib import Path

import plotly
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from streamlit import config

from server.admission import Refusal, channel_refusal, origin_refusal, token_from
from server.channel import HUB

log = logging.getLogger("dllab.live")
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
XSRF_COOKIE = "_streamlit_xsrf"
FIRST_MESSAGE_SECONDS = 10.0  # an opened live socket must name its run's token this soon
READY = "ready"  # the only thing a browser says after the token: it has read the last frame
AHEAD = 2  # frames a browser may ask for ahead of the one it reads


def base_path() -> str:
    """The configured base URL path, "" or "/something"."""
    base = (config.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""


def plotly_url() -> str:
    return f"{base_path()}/_lab/plotly.min.js?v={plotly.__version__}"


def live_path() -> str:
    """The live socket's address; the run's token goes in its first message, not in the URL."""
    return f"{base_path()}/_lab/live"


def _right_prefix(prefix: str | None) -> bool:
    return (f"/{prefix.strip('/')}" if prefix else "") == base_path()


@functools.cache
def plotly_gzipped() -> bytes:
    """plotly.js compressed once per process (~1 s of CPU): Streamlit's gzip middleware would
    otherwise compress its 4.8 MB again for every request, on the event loop."""
    return gzip.compress(PLOTLY_JS.read_bytes(), compresslevel=6)


async def plotly_js(request: Request) -> Response:
    if not _right_prefix(request.path_params.get("prefix")):
        return PlainTextResponse("Not found", status_code=404)
    # fetched once: the version is in the URL, so the browser may keep it for a week
    headers = {"Cache-Control": "public, max-age=604800, immutable", "Vary": "Accept-Encoding"}
    if "gzip" not in request.headers.get("accept-encoding", ""):
        return FileResponse(PLOTLY_JS, media_type="application/javascript", headers=headers)
    body = await asyncio.to_thread(plotly_gzipped)  # the middleware passes an encoded body through
    return Response(
        body, media_type="application/javascript", headers={**headers, "Content-Encoding": "gzip"}
    )


async def live_socket(ws: WebSocket) -> None:
    """Accept, read the token, and either refuse in words (a JSON `{"refused": ...}` and a close
    code 4000 + the HTTP status) or serve the run's frames. Refusals come after accepting, so
    the page can say why instead of seeing a bare failed handshake."""
    if not _right_prefix(ws.path_params.get("prefix")):
        await ws.close(code=4404)  # not this server's base path: before accepting, as any 404
        return
    await ws.accept()
    try:
        first = await asyncio.wait_for(ws.receive(), FIRST_MESSAGE_SECONDS)
    except (TimeoutError, WebSocketDisconnect, RuntimeError):
        await _close(ws, 1008)
        return
    token = token_from(first)
    channel = HUB.find(token) if token else None
    refusal = await asyncio.to_thread(origin_refusal, ws.headers)  # may look up this machine's IPs
    refusal = refusal or channel_refusal(channel, ws.cookies.get(XSRF_COOKIE))
    if refusal is not None:
        await _refuse(ws, refusal)
        return
    viewer = channel.join(asyncio.get_running_loop())
    try:
        await _serve(ws, viewer)
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        channel.leave(viewer)


async def _refuse(ws: WebSocket, refusal: Refusal) -> None:
    log.info("live channel refused (%s): %s", refusal.status, refusal.why)
    try:
        await ws.send_text(json.dumps({"refused": refusal.why, "status": refusal.status}))
    except (WebSocketDisconnect, RuntimeError):
        return
    await _close(ws, 4000 + refusal.status)


async def _close(ws: WebSocket, code: int) -> None:
    try:
        await ws.close(code=code)
    except RuntimeError:  # already closed by the browser
        pass


async def _serve(ws: WebSocket, viewer) -> None:
    """Send a frame for each "ready" the browser said (it has read the last one), up to AHEAD
    asked ahead: the panel asks twice at first, so that the next frame is already on its way
    while it reads one, and a slow browser still skips frames instead of piling them up. While
    a frame is awaited (an idle page can wait for hours), a closed tab is still heard at once;
    anything else a client sends ends the connection."""
    incoming = asyncio.ensure_future(ws.receive())
    pending = None
    asked = 0
    try:
        while True:
            if pending is None and asked:
                pending = asyncio.ensure_future(viewer.next_frame())
            waiting = {incoming} if pending is None else {incoming, pending}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if incoming.done():
                if not await _still_ready(ws, incoming.result()):
                    return
                asked = min(asked + 1, AHEAD)  # more "ready"s than that are one
                incoming = asyncio.ensure_future(ws.receive())
            if pending is not None and pending.done():
                frame, pending = pending.result(), None
                if frame is None:  # the browser session that owned the channel has gone
                    await ws.close(code=1000)
                    return
                await ws.send_bytes(frame)
                asked -= 1
    finally:
        incoming.cancel()
        if pending is not None:
            pending.cancel()


async def _still_ready(ws: WebSocket, message: dict) -> bool:
    """Whether the browser is still there and said "ready"; anything else closes the socket."""
    if message["type"] == "websocket.disconnect":
        return False
    if message.get("text") != READY:
        await _close(ws, 1008)
        return False
    return True


def operator(request: Request) -> bool:
    """An operator: a client on this machine that came straight here (not through a proxy, which
    also connects from loopback), or one that shows DLLAB_STATUS_TOKEN as its bearer token."""
    token = os.environ.get("DLLAB_STATUS_TOKEN", "")
    shown = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if token and hmac.compare_digest(shown, token):
        return True
    forwarded = any(h in request.headers for h in ("x-forwarded-for", "x-real-ip", "forwarded"))
    host = request.client.host if request.client else ""
    return not forwarded and host in ("127.0.0.1", "::1", "localhost")


async def status(request: Request) -> Response:
    """For operators and benchmarks: workers ready, runs training and waiting (no learner data)."""
    if not _right_prefix(request.path_params.get("prefix")):
        return PlainTextResponse("Not found", status_code=404)
    if not operator(request):
        return PlainTextResponse("For this server's operators only.", status_code=403)
    from labs.core.runner import SLOTS
    from labs.core.workers import POOL

    ready, idle = POOL.readiness()
    slots = {
        kind: {"training": s.active, "limit": s.limit, "waiting": s.waiting} for kind, s in SLOTS.items()
    }
    return JSONResponse({"workers": {"ready": ready, "idle": idle}, "runs": slots, "channels": len(HUB)})


def routes() -> list:
    from server.serving import serve_request

    return [
        Route("/_lab/serve/{token}", serve_request, methods=["GET", "POST"]),
        Route("/{prefix:path}/_lab/serve/{token}", serve_request, methods=["GET", "POST"]),
        Route("/_lab/status", status),
        Route("/{prefix:path}/_lab/status", status),
        Route("/_lab/plotly.min.js", plotly_js),
        Route("/{prefix:path}/_lab/plotly.min.js", plotly_js),
        WebSocketRoute("/_lab/live", live_socket),
        WebSocketRoute("/{prefix:path}/_lab/live", live_socket),
    ]
