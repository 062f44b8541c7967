"""The live channel: how a run's frames reach the browsers that show it.

A page that starts a run opens a `Channel` for it, under an unguessable token that only its
own browser session is given. The run's thread tells the channel whenever something arrived
(a snapshot, curve points, a frame of figures drawn in the worker); the channel keeps nothing
but the run's newest part of each kind. Each browser tab that shows the run is a `Viewer`: it
asks for the next frame when it has drawn the last one, and gets every part that changed since
then, so a slow browser skips frames instead of building a lag, and a viewer that never asks
costs nothing. After the run ends the token serves its final frame for EXPIRE_SECONDS, then
answers "not found".

No figure is built here: the parts arrive as JSON bytes, and a frame is their concatenation.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time

from labs.core.frames import to_json

EXPIRE_SECONDS = 30.0  # after its run ends, a token still serves the final frame this long
STATUS_SECONDS = 0.25  # with no new figure, a viewer still gets a fresh progress line this often


class Channel:
    def __init__(self, run, owner: str | None):
        self.token = secrets.token_urlsafe(24)
        self.run, self.owner = run, owner
        self.ended_at: float | None = None
        self._viewers: set[Viewer] = set()
        self._lock = threading.Lock()
        run.listeners.append(self._changed)
        self._changed(run)

    def _changed(self, run) -> None:
        """Called on the run's thread (or the server's, for Stop) whenever the run moved on."""
        if self.ended_at is None and run.status()["state"] in ("done", "stopped", "failed"):
            self.ended_at = time.monotonic()
        with self._lock:
            viewers = list(self._viewers)
        for viewer in viewers:
            viewer.wake()

    @property
    def expired(self) -> bool:
        return self.ended_at is not None and time.monotonic() - self.ended_at > EXPIRE_SECONDS

    def join(self, loop: asyncio.AbstractEventLoop) -> Viewer:
        viewer = Viewer(self, loop)
        with self._lock:
            self._viewers.add(viewer)
        return viewer

    def leave(self, viewer: Viewer) -> None:
        with self._lock:
            self._viewers.discard(viewer)

    @property
    def viewers(self) -> int:
        with self._lock:
            return len(self._viewers)

    def parts(self) -> dict[str, bytes]:
        """The newest part of each kind: the worker's figures (already bytes) and the status."""
        return {**self.run.frames, "status": to_json(self.run.status())}


class Viewer:
    """One browser tab's connection to a channel."""

    def __init__(self, channel: Channel, loop: asyncio.AbstractEventLoop):
        self.channel, self.loop = channel, loop
        self.sent: dict[str, bytes] = {}
        self.last_sent = -1e9
        self._event = asyncio.Event()

    def wake(self) -> None:
        """Thread-safe: something new may be there."""
        try:
            self.loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:  # the server's loop has closed: nobody is listening any more
            pass

    async def next_frame(self) -> bytes:
        """The parts that changed since this viewer's last frame, as soon as a figure changed,
        or STATUS_SECONDS after the last frame when only the progress line moved."""
        while True:
            self._event.clear()
            parts = self.channel.parts()
            changed = {name: data for name, data in parts.items() if self.sent.get(name) != data}
            waited = self.loop.time() - self.last_sent
            figures_changed = any(name != "status" for name in changed)
            if changed and (figures_changed or waited >= STATUS_SECONDS or self.channel.ended_at):
                self.sent.update(changed)
                self.last_sent = self.loop.time()
                return frame(changed)
            try:
                await asyncio.wait_for(self._event.wait(), max(0.01, STATUS_SECONDS - waited))
            except TimeoutError:
                pass


def frame(parts: dict[str, bytes]) -> bytes:
    """{"parts": {name: part, ...}} from parts that are already JSON: concatenation only."""
    body = b",".join(json.dumps(name).encode() + b":" + data for name, data in parts.items())
    return b'{"parts":{' + body + b"}}"


class Hub:
    """Every open channel of this server process, by token."""

    def __init__(self):
        self._channels: dict[str, Channel] = {}
        self._lock = threading.Lock()

    def open(self, run, owner: str | None) -> Channel:
        channel = Channel(run, owner)
        with self._lock:
            for token in [t for t, c in self._channels.items() if c.expired]:
                del self._channels[token]
            self._channels[channel.token] = channel
        return channel

    def find(self, token: str) -> Channel | None:
        """The channel of a token, unless there is none or it has expired."""
        with self._lock:
            channel = self._channels.get(token)
            if channel is not None and channel.expired:
                del self._channels[token]
                return None
            return channel

    def __len__(self) -> int:
        with self._lock:
            return len(self._channels)


HUB = Hub()


def owner_of(xsrf_cookie: str | None) -> str | None:
    """Who a browser is, from Streamlit's XSRF cookie: the token inside it stays the same for
    the browser's whole visit, while the cookie's masked text changes. None without XSRF."""
    if not xsrf_cookie:
        return None
    from streamlit.web.server.starlette.starlette_app_utils import decode_xsrf_token_string

    try:
        token, _ = decode_xsrf_token_string(xsrf_cookie)
    except (ValueError, TypeError):
        return None
    return token.hex() if token else None
