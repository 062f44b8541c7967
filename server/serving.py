"""Chapter 19's model behind an HTTP route of the lab itself, as the books' production chapters
end: `POST /_lab/serve/<token>` with a JSON body of 28×28 images answers each image's class and
probabilities.

Requests are batched dynamically: the first request of a batch waits up to `window_ms` for
others, up to `max_batch` images, and the model answers them in one call (`max_batch` 1: each
request alone, no waiting). The token in the address is the key: unguessable, made per served
model. An endpoint is bounded like a run: it ends with the browser session that started it
(server/sessions.py), after DLLAB_MAX_RUN_SECONDS, or after MAX_REQUESTS requests; then its
address answers 404 in words. The model runs in a thread beside the event loop (onnxruntime and
PyTorch release the GIL while they compute).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from labs.core.budget import Limits

SIDE = 28
MAX_BODY_BYTES = 256 * 1024  # a request of 16 images as JSON text is ~100 KB
MAX_IMAGES_PER_REQUEST = 16
MAX_REQUESTS = 50_000
GONE = (
    "No model is served at this address: the page that served it was closed, its time ran out, "
    "or it was never started. Train on the production page and press Serve it over HTTP again."
)


@dataclass(frozen=True)
class Batching:
    """How requests are gathered: up to `max_batch` images, waiting at most `window_ms` after a
    batch's first request for the others (max_batch 1: no batching)."""

    max_batch: int = 16
    window_ms: float = 2.0

    @property
    def on(self) -> bool:
        return self.max_batch > 1


@dataclass(eq=False)
class Endpoint:
    """One served model: `predict` maps images (N, 1, 28, 28) float32 to logits (N, classes)."""

    predict: Callable[[np.ndarray], np.ndarray]
    name: str
    batching: Batching = field(default_factory=Batching)
    seconds: float = field(default_factory=lambda: Limits.from_env().seconds)
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    depth: int = 0  # requests waiting when the latest batch was taken
    batches: int = 0
    _queue: asyncio.Queue | None = None
    _worker: asyncio.Task | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def close(self) -> None:
        """Off the air: its batching task ends (it would otherwise wait forever on an empty
        queue, holding the model)."""
        if self._worker is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._worker.cancel)

    def expired(self) -> bool:
        return time.monotonic() - self.started > self.seconds or self.requests >= MAX_REQUESTS

    async def answer(self, images: np.ndarray) -> tuple[np.ndarray, int]:
        """The logits of `images` and the size of the batch they were computed in."""
        if self._worker is None or self._worker.done():
            self._queue, self._loop = asyncio.Queue(), asyncio.get_running_loop()
            self._worker = self._loop.create_task(self._batches())
        self.requests += 1
        done = asyncio.get_running_loop().create_future()
        await self._queue.put((images, done))
        return await done

    async def _batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self._queue.get()]
            count, rule = len(waiting[0][0]), self.batching
            deadline = loop.time() + rule.window_ms / 1000
            while rule.on and count < rule.max_batch:
                left = deadline - loop.time()
                if left <= 0 and self._queue.empty():
                    break
                try:  # those already queued join at once, others until the window closes
                    item = (
                        self._queue.get_nowait()
                        if not self._queue.empty()
                        else await asyncio.wait_for(self._queue.get(), left)
                    )
                except TimeoutError:
                    break
                waiting.append(item)
                count += len(item[0])
            self.depth, self.batches = self._queue.qsize(), self.batches + 1
            await self._run(waiting)

    async def _run(self, waiting: list) -> None:
        images = np.concatenate([imgs for imgs, _ in waiting])
        try:
            logits = np.asarray(await asyncio.to_thread(self.predict, images), dtype=np.float32)
        except Exception as error:  # the requests say so; the endpoint keeps serving
            for _, done in waiting:
                if not done.done():
                    done.set_exception(error)
            return
        start = 0
        for imgs, done in waiting:
            if not done.done():
                done.set_result((logits[start : start + len(imgs)], len(images)))
            start += len(imgs)


_SERVED: dict[str, Endpoint] = {}
_LOCK = threading.Lock()


def serve(endpoint: Endpoint) -> str:
    """Put `endpoint` on the air: the token of its address."""
    token = secrets.token_urlsafe(24)
    with _LOCK:
        _SERVED[token] = endpoint
    return token


def stop_serving(token: str) -> None:
    with _LOCK:
        endpoint = _SERVED.pop(token, None)
    if endpoint is not None:
        endpoint.close()


def served(token: str) -> Endpoint | None:
    """The endpoint at `token`, if it is still on the air (an expired one is taken off)."""
    with _LOCK:
        endpoint = _SERVED.get(token)
        if endpoint is not None and endpoint.expired():
            del _SERVED[token]
            endpoint.close()
            return None
    return endpoint


def path_of(token: str, base: str = "") -> str:
    return f"{base}/_lab/serve/{token}"


# ---------------------------------------------------------------- the route


class BadRequest(ValueError):
    """What was wrong with a request, in words for its sender."""


def images_from(body: bytes) -> np.ndarray:
    """The request's images as (N, 1, 28, 28) float32 in [0, 1]: `{"image": 28 rows of 28}` or
    `{"images": [...]}` of up to MAX_IMAGES_PER_REQUEST."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"The body is not JSON ({error.msg if hasattr(error, 'msg') else error}).") from None
    if not isinstance(payload, dict) or not ({"image", "images"} & payload.keys()):
        raise BadRequest('Send {"image": [[...28 numbers...], ...28 rows]} or {"images": [...]}.')
    listed = payload.get("images", [payload.get("image")])
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_IMAGES_PER_REQUEST:
        raise BadRequest(f'"images" holds 1 to {MAX_IMAGES_PER_REQUEST} images.')
    try:
        images = np.asarray(listed, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadRequest("Every image is 28 rows of 28 numbers.") from None
    if images.shape[1:] != (SIDE, SIDE):
        raise BadRequest(f"Every image is 28 rows of 28 numbers; got shape {list(images.shape[1:])}.")
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise BadRequest("Pixels are numbers from 0 (background) to 1 (ink), as the training digits.")
    return images[:, None]


async def serve_request(request: Request) -> Response:
    """GET: what the endpoint is and how to ask it. POST: the classes of the images sent."""
    from server.routes import _right_prefix

    if not _right_prefix(request.path_params.get("prefix")):
        return JSONResponse({"error": "Not found."}, status_code=404)
    endpoint = served(request.path_params["token"])
    if endpoint is None:
        return JSONResponse({"error": GONE}, status_code=404)
    if request.method == "GET":
        return JSONResponse(
            {
                "model": endpoint.name,
                "ask": 'POST JSON {"image": 28 rows of 28 pixels in [0, 1]} or {"images": [...]}',
                "batching": vars(endpoint.batching),
            }
        )
    declared = int(request.headers.get("content-length") or 0)
    if declared > MAX_BODY_BYTES:
        return JSONResponse({"error": f"At most {MAX_BODY_BYTES // 1024} KB a request."}, status_code=413)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return JSONResponse({"error": f"At most {MAX_BODY_BYTES // 1024} KB a request."}, status_code=413)
    try:
        images = images_from(body)
    except BadRequest as why:
        return JSONResponse({"error": str(why)}, status_code=400)
    try:
        logits, batch = await endpoint.answer(images)
    except Exception as error:  # noqa: BLE001 - the sender reads what went wrong
        return JSONResponse({"error": f"The model failed: {type(error).__name__}."}, status_code=500)
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    probabilities = shifted / shifted.sum(1, keepdims=True)
    return JSONResponse(
        {
            "predictions": probabilities.argmax(1).tolist(),
            "probabilities": np.round(probabilities, 4).tolist(),
            "batch": batch,
            "model": endpoint.name,
        }
    )
