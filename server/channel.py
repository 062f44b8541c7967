"""The live channel: how a run's frames reach the browsers that show it.

Each experiment on a page has a `Channel` for this browser session, opened when the page is
drawn, under an unguessable token only that session is given. The live panel connects to it
before any run exists, so when the learner presses Train the run is attached to a socket that
is already open: its first frame leaves as soon as the worker has drawn it, without waiting
for Streamlit's rerun to reach the browser. A channel serves one page view's runs; once its
run has ended, the next page draw opens a fresh token, and the old one serves the final frame
for EXPIRE_SECONDS, then answers "not found".

The run's thread tells the channel whenever something arrived (a snapshot, curve points, a
frame of figures drawn in the worker); the channel keeps nothing but the run's newest part of
each kind. Each browser tab that shows the run is a `Viewer`: it asks for the next frame when
it has drawn the last one, and gets every part that changed since then, so a slow browser
skips frames instead of building a lag, and a viewer that never asks costs nothing.

No figure is built here: the parts arrive as JSON bytes, and a frame is their concatenation.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time

from labs.core.frames import to_json
from labs.core.runner import ENDED

EXPIRE_SECONDS = 30.0  # after its run ends, a token still serves the final frame this long
IDLE_EXPIRE_SECONDS = 6 * 3600.0  # a page left open this long without a run: its token lapses
STATUS_SECONDS = 0.25  # with no new figure and no new step, a viewer still gets a fresh line this often
STEP_SECONDS = 1 / 60  # a new step count leaves this often at most: the line moves at a browser's pace
IDLE = "idle"  # what a channel's status says before the page's first run
IDLE_STATUS = to_json({"state": IDLE, "run": None})


class Channel:
    def __init__(self, run=None, owner: str | None = None):
        self.token = secrets.token_urlsafe(24)
        self.owner = owner
        self.run = None
        self.opened_at = time.monotonic()
        self.ended_at: float | None = None
        self.closed = False
        self._viewers: set[Viewer] = set()
        self._lock = threading.Lock()
        if run is not None:
            self.attach(run)

    def attach(self, run) -> None:
        """Show `run` from now on (the page's new run; the previous one, if any, is stopping):
        viewers already connected get its first frame as soon as it is there."""
        with self._lock:
            previous, self.run, self.ended_at = self.run, run, None
        if previous is not None and self._changed in previous.listeners:
            previous.listeners.remove(self._changed)
        run.listeners.append(self._changed)
        self._changed(run)

    def _changed(self, run) -> None:
        """Called on the run's thread (or the server's, for Stop) whenever the run moved on."""
        if run is not self.run:
            return
        if self.ended_at is None and run.status()["state"] in ENDED:  # StrEnum: "done" == DONE
            self.ended_at = time.monotonic()
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            viewers = list(self._viewers)
        for viewer in viewers:
            viewer.wake()

    def close(self) -> None:
        """The browser session has gone: the token stops working now."""
        self.closed = True
        self._wake()

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def expired(self) -> bool:
        now = time.monotonic()
        if self.closed:
            return True
        if self.run is None:
            return now - self.opened_at > IDLE_EXPIRE_SECONDS
        return self.ended_at is not None and now - self.ended_at > EXPIRE_SECONDS

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

    def parts(self) -> tuple[object, dict[str, bytes], int, tuple]:
        """(the run shown, the newest part of each kind, its steps done, its news): the
        worker's figures (already bytes) and the status; only an idle status before the first
        run. The news is what a learner waits to see at once (`news_of`)."""
        run = self.run
        if run is None:
            return None, {"status": IDLE_STATUS}, 0, ()
        status = run.status()
        return run, {**run.frames, "status": to_json(status)}, status["step"], news_of(status)


def news_of(status: dict) -> tuple:
    """What in a status is news to show at once, not at the progress line's pace: the run began,
    ended or is stopping, a message, a move in the queue. (A status's clock and ETA move on
    every look, its step count STEP_SECONDS apart.)"""
    return tuple(status.get(k) for k in ("state", "message", "stopping", "queue", "held_back"))


class Viewer:
    """One browser tab's connection to a channel."""

    def __init__(self, channel: Channel, loop: asyncio.AbstractEventLoop):
        self.channel, self.loop = channel, loop
        self.run = None  # the run whose parts `sent` holds
        self.sent: dict[str, bytes] = {}
        self.last_sent = -1e9
        self.step_sent = -1  # the step count of the last progress line sent
        self.news_sent: tuple = ()  # the news (`news_of`) of the last status sent
        self._event = asyncio.Event()

    def wake(self) -> None:
        """Thread-safe: something new may be there."""
        try:
            self.loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:  # the server's loop has closed: nobody is listening any more
            pass

    async def next_frame(self) -> bytes | None:
        """The parts that changed since this viewer's last frame, as soon as a figure changed;
        as soon as the run's state moved (queued to training: its first numbers follow);
        STEP_SECONDS after the last frame when only the step count moved (the progress line
        follows the run at a browser's pace), STATUS_SECONDS when only its clock did. A new
        run on the channel starts afresh: every part of it is new. None once the channel closed."""
        while not self.channel.closed:
            self._event.clear()
            run, parts, step, news = self.channel.parts()
            if run is not self.run:
                self.run, self.sent, self.step_sent, self.news_sent = run, {}, -1, ()
            changed = {name: data for name, data in parts.items() if self.sent.get(name) != data}
            waited = self.loop.time() - self.last_sent
            urgent = any(name != "status" for name in changed) or news != self.news_sent
            due = STEP_SECONDS if step != self.step_sent else STATUS_SECONDS
            if changed and (urgent or waited >= due or run is None or self.channel.ended):
                self.sent.update(changed)
                self.last_sent, self.step_sent, self.news_sent = self.loop.time(), step, news
                return frame(changed)
            if run is None:  # nothing will move until a run is attached: wait for it
                await self._event.wait()
                continue
            await self._until_due(run, due)
        return None

    async def _until_due(self, run, due: float) -> None:
        """Until something arrived, the progress line is due, or the step count moved (a
        worker's moves in shared memory, with no event: looked at STEP_SECONDS apart, cheaply)."""
        while True:
            waited = self.loop.time() - self.last_sent
            try:
                await asyncio.wait_for(self._event.wait(), max(0.01, min(STEP_SECONDS, due - waited)))
                return
            except TimeoutError:
                pass
            if self.loop.time() - self.last_sent >= due or run.steps_done() != self.step_sent:
                return


def frame(parts: dict[str, bytes]) -> bytes:
    """{"parts": {name: part, ...}} from parts that are already JSON: concatenation only."""
    body = b",".join(json.dumps(name).encode() + b":" + data for name, data in parts.items())
    return b'{"parts":{' + body + b"}}"


class Hub:
    """Every open channel of this server process, by token."""

    def __init__(self):
        self._channels: dict[str, Channel] = {}
        self._lock = threading.Lock()

    def open(self, run=None, owner: str | None = None) -> Channel:
        """A new channel, for `run` or (None) for the page's next run."""
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
