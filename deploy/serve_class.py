"""Host a class on one machine with several server processes: `make serve-class REPLICAS=n`.

Starts, and keeps running until Ctrl-C (or SIGTERM):

- a Ray head on this machine, with a token of its own (or joins the cluster at
  DLLAB_RAY_ADDRESS: GPU machines that joined it with `ray start --address ...` train there);
- n Streamlit replicas of the lab on loopback ports, on the Ray backend (DLLAB_BACKEND=ray: one
  class queue for all of them), sharing one cookie secret so a browser's cookies hold on any;
- Debian's nginx in front (deploy/nginx/dllab-replicas.conf): sticky sessions by a route
  cookie, WebSocket upgrades, passive health checks.

A replica that exits is started again. Everything it writes (logs, nginx's files, Ray's session)
goes in one folder (--dir). Standard library only: it runs before anything is imported.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "deploy" / "nginx" / "dllab-replicas.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# nginx's main file around the site file, with every path it writes inside one folder
NGINX_MAIN = """daemon off;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/site.conf;
}}
"""


def say(text: str) -> None:
    print(f"[serve-class] {text}", flush=True)


def site_for(ports: list[int], listen: str) -> str:
    """The shipped replicas site, listening on `listen`, with one server line per replica."""
    text = SITE.read_text(encoding="utf-8").replace("listen 80;", f"listen {listen};")
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;\n" for p in ports)
    return re.sub(r"(    server 127\.0\.0\.1:\d+ [^\n]*\n)+", servers, text, count=1)


class ClassHost:
    def __init__(self, args):
        self.args = args
        self.dir = Path(args.dir).resolve()
        self.ports = [args.first_port + i for i in range(args.replicas)]
        self.replicas: dict[int, subprocess.Popen] = {}
        self.head: subprocess.Popen | None = None
        self.nginx: subprocess.Popen | None = None
        self.ending = False
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", DLLAB_BACKEND="ray")

    # -- start --------------------------------------------------------------------------------
    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ray()
        self.env["STREAMLIT_SERVER_COOKIE_SECRET"] = self._kept_secret("cookie_secret")
        for port in self.ports:
            self._start_replica(port)
        for port in self.ports:
            self._wait_healthy(port)
        self._nginx()
        ray_at = self.env["DLLAB_RAY_ADDRESS"]
        say(f"ready: http://{self.args.listen} ({len(self.ports)} replicas, Ray at {ray_at})")

    def _kept_secret(self, name: str) -> str:
        """A secret kept in the folder across restarts (browsers' cookies stay valid)."""
        path = self.dir / name
        if not path.exists():
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def _ray(self) -> None:
        if os.environ.get("DLLAB_RAY_ADDRESS"):  # an existing cluster: join it with its token
            say(f"joining the Ray cluster at {os.environ['DLLAB_RAY_ADDRESS']}")
            return
        token = self.dir / "ray_token"
        self._kept_secret(token.name)
        self.env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(token),
            DLLAB_RAY_ADDRESS=f"127.0.0.1:{self.args.ray_port}",
        )
        ray_dir = Path(f"/tmp/dllab-ray-{self.args.ray_port}")  # Ray's socket paths must stay short
        command = [
            str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
            f"--port={self.args.ray_port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
            f"--temp-dir={ray_dir}", "--disable-usage-stats",
        ]  # fmt: skip
        if self.args.ray_cpus:
            command.append(f"--num-cpus={self.args.ray_cpus}")
        # Ray workers belong to one replica each (Ray's workers serve one driver), and Ray ends
        # idle ones past one per CPU: every replica's warmed workers (one per run slot) must
        # stay, or each run waits for a new process to import torch and the labs
        cpu_runs = int(os.environ.get("DLLAB_CPU_RUNS", "0") or 0) or max(2, (os.cpu_count() or 2) // 2)
        head_env = dict(self.env)
        head_env.setdefault("RAY_num_workers_soft_limit", str(self.args.replicas * cpu_runs + 2))
        log = (self.dir / "ray-head.log").open("w")
        self.head = subprocess.Popen(
            command, env=head_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while "will now block" not in (self.dir / "ray-head.log").read_text(errors="replace"):
            if self.head.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Ray head did not start: see {self.dir / 'ray-head.log'}")
            time.sleep(0.5)
        say(f"Ray head at {self.env['DLLAB_RAY_ADDRESS']} (token in {token})")

    def _start_replica(self, port: int) -> None:
        log = (self.dir / f"replica-{port}.log").open("a")
        command = [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
            "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
        ]  # fmt: skip
        self.replicas[port] = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        say(f"replica on 127.0.0.1:{port} (pid {self.replicas[port].pid})")

    def _wait_healthy(self, port: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.replicas[port].poll() is not None:
                raise SystemExit(f"replica {port} ended: see {self.dir / f'replica-{port}.log'}")
            if healthy(f"http://127.0.0.1:{port}"):
                return
            time.sleep(0.5)
        raise SystemExit(f"replica {port} did not answer its health check in {timeout:g} s")

    def _nginx(self) -> None:
        folder = self.dir / "nginx"
        folder.mkdir(exist_ok=True)
        (folder / "site.conf").write_text(site_for(self.ports, self.args.listen))
        (folder / "nginx.conf").write_text(NGINX_MAIN.format(dir=folder, workers=self.args.nginx_workers))
        self.nginx = subprocess.Popen(
            [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "stderr.log").open("w"),
            start_new_session=True,
        )
        time.sleep(0.5)
        if self.nginx.poll() is not None:
            raise SystemExit(f"nginx did not start: {(folder / 'stderr.log').read_text()}")

    # -- run ----------------------------------------------------------------------------------
    def keep_running(self) -> None:
        """Start again a replica that ended (killed, crashed), until asked to end."""
        while not self.ending:
            time.sleep(1.0)
            for port, proc in list(self.replicas.items()):
                if proc.poll() is not None and not self.ending:
                    say(f"replica {port} ended (exit {proc.returncode}): starting it again")
                    self._start_replica(port)
            if self.head is not None and self.head.poll() is not None and not self.ending:
                raise SystemExit("the Ray head ended: the class server stops")

    def stop(self, *_) -> None:
        self.ending = True
        for proc in [self.nginx, *self.replicas.values()]:
            end(proc, signal.SIGTERM, 15)
        end(self.head, signal.SIGTERM, 10)
        say("stopped")


def healthy(url: str) -> bool:
    """Whether the lab at `url` answers Streamlit's health check."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def end(proc: subprocess.Popen | None, sig: int, grace: float) -> None:
    """End a process and what it started (its own session), politely first."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("REPLICAS", 2)))
    parser.add_argument("--listen", default=os.environ.get("LISTEN", "0.0.0.0:8080"), help="nginx's address")
    parser.add_argument("--first-port", type=int, default=8501, help="the first replica's loopback port")
    parser.add_argument("--ray-port", type=int, default=6379)
    parser.add_argument("--ray-cpus", type=int, default=0, help="CPUs the head offers runs (default: all)")
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument("--dir", default=os.environ.get("DLLAB_CLASS_DIR", "/tmp/dllab-class"))
    host = ClassHost(parser.parse_args(argv))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        host.start()
        host.keep_running()
    except KeyboardInterrupt:
        pass
    finally:
        host.stop()


if __name__ == "__main__":
    main()
