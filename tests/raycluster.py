"""A Ray cluster of the test's own on loopback: `ray start --head` as the hosting docs run it,
in a folder of its own, ended with its processes when the test is done."""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from deploy.serve_class import end
from tests.browser import ends_with_this_process, free_port

RAY = str(Path(sys.executable).with_name("ray"))
# One token for every cluster of this test session, in a file only this user reads. Ray reads
# how to authenticate once per process, so these are set as this module is imported (conftest).
TOKEN = Path(tempfile.mkdtemp(prefix="dllab-ray-token-")) / "auth_token"
TOKEN.write_text(secrets.token_hex(32))
TOKEN.chmod(0o600)
os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(TOKEN), RAY_USAGE_STATS_ENABLED="0")


@contextmanager
def ray_head(cpus: int = 2, extra: tuple[str, ...] = ()):
    """A Ray head on a free loopback port, asking for the session's token (as `make serve-class`
    asks for one): yields the settings that reach it (DLLAB_RAY_ADDRESS and Ray's token
    settings), which this process takes on while it runs."""
    folder = Path(tempfile.mkdtemp(prefix="dllab-ray-", dir="/tmp"))  # Ray's socket paths are short
    port = free_port()
    reach = {
        "DLLAB_RAY_ADDRESS": f"127.0.0.1:{port}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(TOKEN),
    }
    env = {**os.environ, **reach}
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            "--include-dashboard=false",
            f"--temp-dir={folder}",
            "--disable-usage-stats",
            *extra,
        ],
        env=env,
        stdout=(folder / "head.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its raylet and workers go with it
        preexec_fn=ends_with_this_process(),
    )
    before = {name: os.environ.get(name) for name in reach}
    try:
        _wait_for_cluster(folder / "head.log", head)
        os.environ.update(reach)
        yield reach
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        end(head, signal.SIGTERM, 5)  # with its raylet and workers (its own session)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def ray_node(address: str, cpus: int = 2, idle_workers_kept: int | None = None):
    """A second Ray node on this machine joining the head at `address`, as a GPU machine joins a
    class's cluster (`ray start --address ...`, README, hosting); keeping `idle_workers_kept`
    idle Ray workers (Ray's default: one per CPU) as the README's command does."""
    env = os.environ.copy()
    if idle_workers_kept:
        env["RAY_num_workers_soft_limit"] = str(idle_workers_kept)
    folder = Path(tempfile.mkdtemp(prefix="dllab-ray-node-", dir="/tmp"))
    node = subprocess.Popen(
        [
            RAY,
            "start",
            "--block",
            f"--address={address}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=(folder / "node.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=ends_with_this_process(),
    )
    try:
        _wait_for_cluster(folder / "node.log", node)
        yield
    finally:
        end(node, signal.SIGTERM, 5)  # with its raylet and workers (its own session)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_cluster(log: Path, head: subprocess.Popen, timeout: float = 120) -> None:
    """Until `ray start` says the cluster runs (it blocks from then on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        said = log.read_text(errors="replace")
        if head.poll() is not None:
            raise RuntimeError(f"ray start ended: {said[-2000:]}")
        if "will now block" in said:
            return
        time.sleep(0.5)
    raise TimeoutError(f"no Ray cluster after {timeout:g} s: {log.read_text(errors='replace')[-2000:]}")
