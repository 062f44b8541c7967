"""One simulated learner for `make bench-class` (bench/classroom.py): a browser's conversation
with the lab, spoken over Streamlit's own WebSocket protocol (the protobuf messages of the
installed `streamlit` package) and the live channel's, without a browser.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

ARRIVAL_SECONDS = 3.0  # learners press Train within this long of each other
RERUN_EVERY_SECONDS = 3.0  # a slider mover's pace
ENDED = {"done", "stopped", "failed"}
Clock = Callable[[], float]  # seconds, monotonic


@dataclass
class Learner:
    number: int
    base: str
    slug: str
    query: str
    mover: bool
    route: str = ""
    replica: str = ""
    cookies: dict = field(default_factory=dict)
    page_ready_s: float | None = None
    first_state_s: float | None = None
    first_frame_s: float | None = None
    began_s: float | None = None  # click -> the run left the queue (its first "running" state)
    end_s: float | None = None
    end_state: str = ""
    end_message: str = ""
    training_states: int = 0
    training_seconds: float = 0.0
    reruns: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    # -- HTTP: the cookies a browser gets before it opens a socket ------------------------------
    def visit(self) -> None:
        request = urllib.request.Request(f"{self.base}/_stcore/health", headers=self._cookie_header())
        with urllib.request.urlopen(request, timeout=30) as answer:
            for header in answer.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
            self.replica = answer.headers.get("X-Dllab-Replica") or urlsplit(self.base).netloc

    def _cookie_header(self) -> dict:
        jar = dict(self.cookies, **({"dllab_route": self.route} if self.route else {}))
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}

    # -- Streamlit's socket ------------------------------------------------------------------------
    async def attend(self, clock: Clock, deadline: float, seated: Barrier) -> None:
        try:
            await asyncio.to_thread(self.visit)
            await self._session(clock, deadline, seated)
        except Exception as err:  # counted, never raised: one learner's trouble is a measurement
            self.errors.append(f"{type(err).__name__}: {err}"[:200])
        finally:
            seated.leave()

    async def _session(self, clock: Clock, deadline: float, seated: Barrier) -> None:
        host = urlsplit(self.base)
        ws_base = f"ws://{host.netloc}{host.path}"
        headers = self._cookie_header()
        xsrf = self.cookies.get("_streamlit_xsrf", "")
        async with websockets.connect(
            f"{ws_base}/_stcore/stream",
            subprotocols=["streamlit", xsrf] if xsrf else ["streamlit"],
            origin=self.base.rstrip("/").removesuffix(host.path) or self.base,
            additional_headers=headers,
            max_size=None,
            ping_interval=None,  # as a browser: no keepalive pings of its own
        ) as page:
            t0 = clock()
            page_state = await self._rerun(page, {})
            self.page_ready_s = clock() - t0
            train_id, live = page_state["train"], page_state["live"]
            async with websockets.connect(
                f"{ws_base}{live['path'].removeprefix(host.path)}",
                origin=self.base.rstrip("/").removesuffix(host.path) or self.base,
                additional_headers=headers,
                max_size=None,
                ping_interval=None,
            ) as channel:
                await channel.send(live["token"])
                await channel.send("ready")
                await seated.wait()  # every page is open: "press Train now"
                await asyncio.sleep(random.uniform(0, ARRIVAL_SECONDS))
                clicked = clock()
                await self._send_rerun(page, {train_id: True})
                reader = asyncio.create_task(self._read_frames(channel, clock, clicked, deadline))
                pages = asyncio.create_task(self._keep_page(page, clock, deadline))
                await reader
                pages.cancel()  # one reader of the page's socket at a time
                await asyncio.gather(pages, return_exceptions=True)
                if self.mover:  # a slider moved every few seconds until the scenario ends
                    await self._move_sliders(page, clock, deadline)

    async def _rerun(self, page, triggers: dict) -> dict:
        """Run the page (with `triggers` pressed) to its end; the Train button and live panel."""
        await self._send_rerun(page, triggers)
        return await self._read_page(page)

    async def _send_rerun(self, page, triggers: dict) -> None:
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query
        state.page_name = self.slug
        for widget_id, value in triggers.items():
            state.widget_states.widgets.append(WidgetState(id=widget_id, trigger_value=value))
        await page.send(msg.SerializeToString())

    async def _read_page(self, page) -> dict:
        found: dict = {}
        while True:
            fwd = ForwardMsg()
            fwd.ParseFromString(await page.recv())
            kind = fwd.WhichOneof("type")
            if kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                element = fwd.delta.new_element
                what = element.WhichOneof("type")
                if what == "button" and element.button.id.endswith(f"{self.slug}-train"):
                    found["train"] = element.button.id
                elif what == "bidi_component" and element.bidi_component.id.endswith(f"{self.slug}-live"):
                    found["live"] = json.loads(element.bidi_component.json)
            elif kind == "script_finished":
                if "train" not in found or "live" not in found:
                    raise RuntimeError(f"the page of {self.slug} showed no Train button or live panel")
                return found
            elif kind == "page_not_found":
                raise RuntimeError(f"no page {self.slug}")

    async def _keep_page(self, page, clock: Clock, deadline: float) -> None:
        """Read what Streamlit sends while the run trains (the page's own reruns)."""
        while clock() < deadline:
            await page.recv()

    async def _move_sliders(self, page, clock: Clock, deadline: float) -> None:
        while clock() + RERUN_EVERY_SECONDS < deadline:
            await asyncio.sleep(RERUN_EVERY_SECONDS * random.uniform(0.7, 1.3))
            start = clock()
            await self._rerun(page, {})
            self.reruns.append(clock() - start)

    # -- the live channel ------------------------------------------------------------------------
    async def _read_frames(self, channel, clock: Clock, clicked: float, deadline: float) -> None:
        run, steps, training_since = None, set(), None
        while clock() < deadline:
            try:
                raw = await asyncio.wait_for(channel.recv(), timeout=max(0.1, deadline - clock()))
            except TimeoutError:
                break
            message = json.loads(raw)
            if message.get("refused"):
                raise RuntimeError(f"live view refused: {message['refused']}")
            parts = message.get("parts", {})
            status = parts.get("status") or {}
            if status.get("run"):
                run = run or status["run"]
                if self.first_state_s is None:
                    self.first_state_s = clock() - clicked
                if status.get("state") == "running":
                    training_since = training_since or clock()
                    if self.began_s is None:
                        self.began_s = clock() - clicked
                    if status.get("step") not in steps:
                        steps.add(status.get("step"))
                        self.training_states += 1
                if self.first_frame_s is None and set(parts) - {"status"}:
                    self.first_frame_s = clock() - clicked
                if status.get("state") in ENDED:
                    self.end_s, self.end_state = clock() - clicked, status["state"]
                    self.end_message = status.get("message", "")
                    if training_since is not None:
                        self.training_seconds = clock() - training_since
                    return
            await channel.send("ready")


class Barrier:
    """Every learner's page open before anyone presses Train (one who failed counts as seated)."""

    def __init__(self, n: int):
        self.left, self.event = n, asyncio.Event()

    def leave(self) -> None:
        if not self.event.is_set():
            self.left -= 1
            if self.left <= 0:
                self.event.set()

    async def wait(self) -> None:
        self.leave()
        await self.event.wait()
