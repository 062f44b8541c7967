"""A simulated class, without browsers: K learners who speak Streamlit's own WebSocket protocol
(the protobuf messages of the installed `streamlit` package) and the live channel's, as a
browser does (printed, never asserted).

    make bench-class        # or: .venv/bin/python -m bench.classroom [--learners 8,32,64]

Each learner asks for the page's health (Streamlit's XSRF cookie, nginx's route cookie), opens
Streamlit's socket and runs the chapter's page, opens the live channel the page announces
(token first, then "ready" after every frame, as the panel does), presses Train by sending the
button's trigger, and reads the run's frames to its end. Most learners train a light chapter,
some a second one; a quarter keep moving a slider (a rerun of their page) every few seconds
while the others train. Learners arrive within ARRIVAL_SECONDS, as a class that is told "press
Train now".

Per learner: page ready (first script run finished), click -> first queue position or state,
click -> first frame with a chart or number, states per second while training, run end; and
errors, lost runs (no end within the scenario's time), runs past their budget. Per replica,
from /proc: CPU per page run (while the class opens its pages, before anyone trains) and CPU
per training state delivered while the class trains (an upper bound: the reruns of Train and
of the sliders moved fall in the same window).

Two set-ups: one replica on the local backend (`streamlit run`, its worker pool), and two
replicas on Ray behind nginx (`deploy/serve_class.py`). Loopback only; bounded in learners and
in time (SCENARIO_SECONDS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

ROOT = Path(__file__).resolve().parents[1]
ARRIVAL_SECONDS = 3.0  # learners press Train within this long of each other
SCENARIO_SECONDS = 150.0  # a scenario ends by then, runs or not (a run not ended by then is lost)
RERUN_EVERY_SECONDS = 3.0  # a slider mover's pace
# (chapter, query, share of learners): light chapters, as a class mostly opens them
MIX = [("playground", "epochs=40", 3), ("tabular", "epochs=6", 1)]
ENDED = {"done", "stopped", "failed"}
BUDGET_WORDS = ("budget", "past its time", "too much memory")


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


Clock = type(time.monotonic)


# -- servers -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


class OneReplica:
    """`streamlit run app.py` on the local backend: the default host."""

    name = "1 replica, local backend"

    def __enter__(self):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DLLAB_ALLOW_DOWNLOAD": "0"}
        env.pop("DLLAB_EXECUTOR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_healthy(self.base, self.proc)
        time.sleep(20)  # its workers import torch and the labs
        self.pids = {f"127.0.0.1:{self.port}": self.proc.pid}
        return self

    def __exit__(self, *exc):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(60)


class TwoReplicasOnRay:
    """`deploy/serve_class.py --replicas 2`: a Ray head, two replicas, nginx in front."""

    name = "2 replicas + Ray, behind nginx"

    def __enter__(self):
        self.folder = tempfile.mkdtemp(prefix="dllab-bench-class-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        first = free_port()
        env = {**os.environ, "DLLAB_ALLOW_DOWNLOAD": "0"}
        for name in ("DLLAB_EXECUTOR", "DLLAB_RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
            env.pop(name, None)
        self.log = Path(self.folder) / "serve-class.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "deploy" / "serve_class.py"), "--replicas", "2",
             "--listen", f"127.0.0.1:{self.port}", "--first-port", str(first),
             "--ray-port", str(free_port()), "--dir", self.folder],
            env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while "ready: " not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve-class did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.5)
        time.sleep(60)  # each replica's Ray workers import torch and the labs (on 2 cores, together)
        self.pids = {f"127.0.0.1:{p}": self._pid_of(p) for p in (first, first + 1)}
        return self

    def _pid_of(self, port: int) -> int:
        import re

        return int(re.findall(rf"replica on 127\.0\.0\.1:{port} \(pid (\d+)\)", self.log.read_text())[-1])

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(90)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"no lab at {url}")
        time.sleep(0.5)


# -- a scenario --------------------------------------------------------------------------------


def learners_for(k: int, base: str) -> list[Learner]:
    chapters = [c for c in MIX for _ in range(c[2])]
    return [
        Learner(i, base, *chapters[i % len(chapters)][:2], mover=(i % 4 == 3), route=f"learner-{i}")
        for i in range(k)
    ]


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


async def class_of(learners: list[Learner], host) -> dict:
    """The class opens its pages (as they walk in), then presses Train within ARRIVAL_SECONDS.
    The replicas' CPU is read when every page is open and when the scenario ends."""
    clock = time.monotonic
    deadline = clock() + SCENARIO_SECONDS
    seated = Barrier(len(learners))
    start = {name: cpu_seconds(pid) for name, pid in host.pids.items()}

    async def arrive(learner: Learner) -> None:
        await asyncio.sleep(random.uniform(0, ARRIVAL_SECONDS))
        await learner.attend(clock, deadline, seated)

    async def read_cpu_when_seated() -> dict:
        await seated.event.wait()
        return {name: cpu_seconds(pid) for name, pid in host.pids.items()}

    reading = asyncio.create_task(read_cpu_when_seated())
    await asyncio.gather(*(arrive(learner) for learner in learners))
    seated_cpu = await reading
    end = {name: cpu_seconds(pid) for name, pid in host.pids.items()}
    return {name: (seated_cpu[name] - start[name], end[name] - seated_cpu[name]) for name in start}


def p(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def scenario(host, k: int) -> dict:
    random.seed(k)
    learners = learners_for(k, host.base)
    cpu = asyncio.run(class_of(learners, host))
    per_replica = {}
    for name, (opening, training) in cpu.items():
        mine = [lr for lr in learners if lr.replica == name]
        pages = sum(lr.page_ready_s is not None for lr in mine)
        per_page = opening / max(1, pages)  # a page's first script run (while the class sits down)
        reruns = sum(len(lr.reruns) + 1 for lr in mine if lr.page_ready_s is not None)  # + Train's
        frames = sum(lr.training_states for lr in mine)
        # an upper bound: everything the replica did while the class trained (Train's reruns,
        # the sliders moved, the runs' threads) over the training states it delivered
        per_frame = training / max(1, frames)
        per_replica[name] = {
            "learners": len(mine),
            "cpu ms per page run": round(1000 * per_page, 1),
            "cpu ms per frame (at most)": round(1000 * per_frame, 2),
            "frames": frames,
            "reruns": reruns,
        }
    trained = [lr for lr in learners if lr.training_seconds > 0.5]
    return {
        "set-up": host.name,
        "K": k,
        "errors": sum(bool(lr.errors) for lr in learners),
        "lost": sum(lr.end_s is None and not lr.errors for lr in learners),
        "past budget": sum(any(w in lr.end_message for w in BUDGET_WORDS) for lr in learners),
        "page ready p50": p([lr.page_ready_s for lr in learners], 0.5),
        "page ready p95": p([lr.page_ready_s for lr in learners], 0.95),
        "first state p95": p([lr.first_state_s for lr in learners], 0.95),
        "first frame p50": p([lr.first_frame_s for lr in learners], 0.5),
        "first frame p95": p([lr.first_frame_s for lr in learners], 0.95),
        "began -> first frame p95": p(
            [
                lr.first_frame_s - lr.began_s
                for lr in learners
                if lr.first_frame_s is not None and lr.began_s is not None
            ],
            0.95,
        ),
        "states/s p50": p([lr.training_states / lr.training_seconds for lr in trained], 0.5),
        "end p95": p([lr.end_s for lr in learners], 0.95),
        "rerun p50": p([r for lr in learners for r in lr.reruns], 0.5),
        "replicas": per_replica,
        "sample errors": [lr.errors[0] for lr in learners if lr.errors][:3],
    }


def show(row: dict) -> str:
    def f(v):
        return "–" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    keys = ["K", "errors", "lost", "past budget", "page ready p95", "first state p95", "first frame p50",
            "first frame p95", "began -> first frame p95", "states/s p50", "end p95",
            "rerun p50"]  # fmt: skip
    return "| " + row["set-up"] + " | " + " | ".join(f(row[k]) for k in keys) + " |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learners", default="8,32,64")
    parser.add_argument("--setups", default="one,ray")
    args = parser.parse_args()
    sizes = [int(k) for k in args.learners.split(",")]
    hosts = {"one": OneReplica, "ray": TwoReplicasOnRay}
    rows = []
    for name in args.setups.split(","):
        with hosts[name]() as host:
            for k in sizes:
                row = scenario(host, k)
                rows.append(row)
                print(json.dumps(row), flush=True)
                time.sleep(5)  # the last runs wind down before the next class arrives
    print(
        "\n| set-up | K | errors | lost | past budget | page ready p95 (s) | first state p95 (s) | "
        "first frame p50 (s) | first frame p95 (s) | out of the queue -> first frame p95 (s) | "
        "states/s p50 | end p95 (s) | rerun p50 (s) |"
    )
    print("|---" * 13 + "|")
    for row in rows:
        print(show(row))


if __name__ == "__main__":
    main()
