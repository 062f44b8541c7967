"""A class on several replicas behind nginx, as `make serve-class` hosts it (Ray head, two
Streamlit replicas on the Ray backend, Debian's nginx with sticky routes): learners on
different replicas share one queue and see the same positions, and a replica that is killed
leaves the other replica's learners training."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser import (
    FRAMES_JS,
    LONG_PLAYGROUND,
    alert,
    ends_with_this_process,
    open_page,
    status_says,
    train_button,
)
from tests.raycluster import TOKEN

ROOT = Path(__file__).resolve().parents[1]


class ClassServer:
    """`deploy/serve_class.py` on free loopback ports, with one CPU slot for the whole class."""

    def __init__(self, folder: Path):
        from tests.browser import quiet_free_ports

        self.folder, self.port = folder, quiet_free_ports()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DLLAB_ALLOW_DOWNLOAD": "0",
            "DLLAB_CPU_RUNS": "1",
            "DLLAB_RUNS_PER_LEARNER": "1",
        }
        for name in ("DLLAB_EXECUTOR", "DLLAB_RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
            env.pop(name, None)  # the class host makes its own cluster and token
        first = quiet_free_ports(2)  # a replica each
        self.log = folder / "serve-class.log"
        command = [
            sys.executable, str(ROOT / "deploy" / "serve_class.py"), "--replicas", "2",
            "--listen", f"127.0.0.1:{self.port}", "--first-port", str(first),
            "--ray-port", str(quiet_free_ports()), "--ray-cpus", "2", "--dir", str(folder),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            preexec_fn=ends_with_this_process(),  # it ends its replicas, nginx and Ray head
        )
        self._wait_for("ready: ", 300)

    def said(self) -> str:
        return self.log.read_text(errors="replace")

    def _wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.said():
            assert self.proc.poll() is None, f"serve-class ended:\n{self.said()[-3000:]}"
            assert time.monotonic() < deadline, f"serve-class not {text!r} after {timeout:g} s"
            time.sleep(0.5)

    def replica_pid(self, port: int) -> int:
        pids = re.findall(rf"replica on 127\.0\.0\.1:{port} \(pid (\d+)\)", self.said())
        return int(pids[-1])

    def routes(self) -> dict[str, str]:
        """A route cookie for each replica, found the way nginx hashes them: {replica: route}."""
        found = {}
        for i in range(64):
            request = urllib.request.Request(
                f"{self.base}/_stcore/health", headers={"Cookie": f"dllab_route=r{i}"}
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                found.setdefault(answer.headers["X-Dllab-Replica"], f"r{i}")
            if len(found) == 2:
                return found
        raise AssertionError(f"every route went to {list(found)}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def class_server():
    assert TOKEN.exists()  # the test session's own Ray settings are not the class host's
    with tempfile.TemporaryDirectory(prefix="dllab-class-") as folder:
        host = ClassServer(Path(folder))
        try:
            yield host
        finally:
            host.stop()


def learner_on(browser, host: ClassServer, route: str):
    """A learner's browser whose route cookie leads to one replica."""
    context = browser.new_context()
    context.add_cookies([{"name": "dllab_route", "value": route, "url": host.base}])
    return context


def test_learners_on_two_replicas_share_one_queue(browser, class_server):
    (first_replica, route_1), (_, route_2) = sorted(class_server.routes().items())
    a, b, c, d = (learner_on(browser, class_server, r) for r in (route_1, route_2, route_1, route_1))
    pages = {}
    try:
        # C's net is of another shape: on A's replica it cannot ride in A's batch, so it queues
        shapes = {"A": LONG_PLAYGROUND, "B": LONG_PLAYGROUND, "C": f"{LONG_PLAYGROUND}&units=6"}
        for name, context in (("A", a), ("B", b), ("C", c)):
            pages[name] = open_page(context, class_server.base, "playground", shapes[name])
            train_button(pages[name], "playground").click()
            if name == "A":
                status_says(pages["A"], "Training: step", timeout=120)
        # the class has one slot: B (the other replica) waits first, C (A's replica) after B
        status_says(pages["B"], "position 1 in the queue", timeout=30)
        status_says(pages["C"], "position 2 in the queue", timeout=30)
        # D's run is of A's shape, on A's replica: it rides in A's batch (one Ray task), no slot
        pages["D"] = open_page(d, class_server.base, "playground", LONG_PLAYGROUND)
        train_button(pages["D"], "playground").click()
        status_says(pages["D"], "Training: step", timeout=60)
        for name in "AD":  # the batch gives the slot back once both have left it
            pages[name].locator(".st-key-playground-stop button").click()
            alert(pages[name], "Stopped").wait_for(timeout=60_000)
        status_says(pages["B"], "Training: step", timeout=60)  # the slot went across replicas
        status_says(pages["C"], "position 1 in the queue", timeout=30)
    finally:
        for page in pages.values():
            stop = page.locator(".st-key-playground-stop button")
            if stop.is_enabled():
                stop.click()
        for context in (a, b, c, d):
            context.close()


def test_a_killed_replica_leaves_the_other_replicas_learners_training(browser, class_server):
    routes = class_server.routes()
    (training_replica, route_1), (killed_replica, route_2) = sorted(routes.items())
    a, b = learner_on(browser, class_server, route_1), learner_on(browser, class_server, route_2)
    try:
        page = open_page(a, class_server.base, "playground", LONG_PLAYGROUND)
        other = open_page(b, class_server.base, "playground", {})
        train_button(page, "playground").click()
        status_says(page, "Training: step", timeout=120)
        os.kill(class_server.replica_pid(int(killed_replica.rsplit(":", 1)[1])), signal.SIGKILL)
        frames = page.evaluate(FRAMES_JS)
        deadline = time.monotonic() + 60
        while page.evaluate(FRAMES_JS) < frames + 10:  # frames keep coming from the live replica
            assert time.monotonic() < deadline, "the run stopped with the other replica"
            page.wait_for_timeout(200)
        page.locator(".st-key-playground-stop button").click()
        alert(page, "Stopped").wait_for(timeout=60_000)
        class_server._wait_for("starting it again", 30)  # the host starts the killed one again
        other.close()
    finally:
        a.close()
        b.close()
