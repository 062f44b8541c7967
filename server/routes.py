"""The lab's own routes beside Streamlit's: plotly.js from the installed plotly package (offline,
cached by the browser), and each run's live WebSocket.

Streamlit does not prefix custom routes with `server.baseUrlPath`, so each route is also
mounted under any prefix and answers only when the prefix is the configured one. Paths under
/_stcore/, /media/, /component/ and /static/ are Streamlit's own.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urlsplit

import plotly
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from streamlit import config

from server.channel import HUB, owner_of

log = logging.getLogger("dllab.live")
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
XSRF_COOKIE = "_streamlit_xsrf"


def base_path() -> str:
    """The configured base URL path, "" or "/something"."""
    base = (config.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""


def plotly_url() -> str:
    return f"{base_path()}/_lab/plotly.min.js?v={plotly.__version__}"


def live_path(token: str) -> str:
    return f"{base_path()}/_lab/live/{token}"


def _right_prefix(prefix: str | None) -> bool:
    return (f"/{prefix.strip('/')}" if prefix else "") == base_path()


async def plotly_js(request: Request) -> Response:
    if not _right_prefix(request.path_params.get("prefix")):
        return PlainTextResponse("Not found", status_code=404)
    # 4.8 MB, fetched once: the version is in the URL, so the browser may keep it for a week
    return FileResponse(
        PLOTLY_JS,
        media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=604800, immutable"},
    )


async def _refuse(ws: WebSocket, status: int, why: str) -> None:
    log.info("live channel refused (%s): %s", status, why)
    try:
        await ws.send_denial_response(PlainTextResponse(why, status_code=status))
    except RuntimeError:  # a server without the denial extension: a plain close is a 403
        await ws.close(code=1008)


def _same_origin(ws: WebSocket) -> bool:
    """Browsers send Origin on every WebSocket; another site's page must not open ours."""
    origin = ws.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == ws.headers.get("host")


async def live_socket(ws: WebSocket) -> None:
    channel = HUB.find(ws.path_params["token"])
    if not _right_prefix(ws.path_params.get("prefix")) or channel is None:
        return await _refuse(ws, 404, "No such run, or it ended a while ago.")
    if not _same_origin(ws):
        return await _refuse(ws, 403, "Another site may not open this run.")
    if channel.owner is not None and owner_of(ws.cookies.get(XSRF_COOKIE)) != channel.owner:
        return await _refuse(ws, 403, "This run belongs to another browser.")
    await ws.accept()
    viewer = channel.join(asyncio.get_running_loop())
    try:
        await _serve(ws, viewer)
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        channel.leave(viewer)


async def _serve(ws: WebSocket, viewer) -> None:
    """Send a frame each time the browser says "ready" (it has drawn the last one). While a
    frame is awaited (an idle page can wait for hours), a closed tab is still heard at once."""
    incoming = asyncio.ensure_future(ws.receive())
    try:
        while True:
            if (await incoming)["type"] == "websocket.disconnect":
                return
            incoming = asyncio.ensure_future(ws.receive())
            pending = asyncio.ensure_future(viewer.next_frame())
            while not pending.done():
                await asyncio.wait({incoming, pending}, return_when=asyncio.FIRST_COMPLETED)
                if incoming.done() and not pending.done():
                    if incoming.result()["type"] == "websocket.disconnect":
                        pending.cancel()
                        return
                    incoming = asyncio.ensure_future(ws.receive())  # a repeated "ready"
            frame = pending.result()
            if frame is None:  # the browser session that owned the channel has gone
                await ws.close(code=1000)
                return
            await ws.send_bytes(frame)
    finally:
        incoming.cancel()


async def status(request: Request) -> Response:
    """For operators and benchmarks: workers ready, runs training and waiting (no learner data)."""
    if not _right_prefix(request.path_params.get("prefix")):
        return PlainTextResponse("Not found", status_code=404)
    from labs.core.runner import SLOTS
    from labs.core.workers import POOL

    ready, idle = POOL.readiness()
    slots = {
        kind: {"training": s.active, "limit": s.limit, "waiting": s.waiting} for kind, s in SLOTS.items()
    }
    return JSONResponse({"workers": {"ready": ready, "idle": idle}, "runs": slots, "channels": len(HUB)})


def routes() -> list:
    return [
        Route("/_lab/status", status),
        Route("/{prefix:path}/_lab/status", status),
        Route("/_lab/plotly.min.js", plotly_js),
        Route("/{prefix:path}/_lab/plotly.min.js", plotly_js),
        WebSocketRoute("/_lab/live/{token}", live_socket),
        WebSocketRoute("/{prefix:path}/_lab/live/{token}", live_socket),
    ]
