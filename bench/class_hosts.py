"""The two class hosts `make bench-class` measures (bench/classroom.py): one replica on the
local backend, and two replicas on Ray behind nginx; and their CPU, read from /proc."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from deploy.serve_class import healthy
from tests.browser import free_port

ROOT = Path(__file__).resolve().parents[1]


# -- servers -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        env.update(self.joining())
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

    def joining(self) -> dict:
        """The cluster serve-class joins (its settings): none, it starts its own head."""
        return {}

    def _pid_of(self, port: int) -> int:
        return int(re.findall(rf"replica on 127\.0\.0\.1:{port} \(pid (\d+)\)", self.log.read_text())[-1])

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(90)


class TwoReplicasJoiningACluster(TwoReplicasOnRay):
    """The README's cluster across machines, on loopback: a Ray head that trains nothing (the
    web machine) and a second node that trains every run (a GPU machine that joined it), then
    `DLLAB_RAY_ADDRESS=... serve_class.py --replicas 2` joining that cluster."""

    name = "2 replicas joining a Ray cluster"

    def joining(self) -> dict:
        from tests.raycluster import ray_head, ray_node  # sets Ray's token for this process

        self._cluster = ExitStack()
        reach = self._cluster.enter_context(ray_head(cpus=0))
        cpus = os.cpu_count() or 2
        # the README's `ray start` on a GPU machine keeps every replica's warmed workers
        self._cluster.enter_context(ray_node(reach["DLLAB_RAY_ADDRESS"], cpus, idle_workers_kept=16))
        return reach

    def __exit__(self, *exc):
        try:
            super().__exit__(*exc)
        finally:
            self._cluster.close()


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"no lab at {url}")
        time.sleep(0.5)
