"""Debian's nginx on loopback in front of a lab server, configured by the files an operator
installs (deploy/nginx/): only the listening port and the upstream's address are changed, plus
whatever variant a test names (the common `Host $host` recipe, a missing upgrade)."""

import re
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from deploy.serve_class import NGINX_MAIN
from tests.browser import free_port

ROOT = Path(__file__).resolve().parents[1]
NGINX = "/usr/sbin/nginx"
DEPLOY = ROOT / "deploy" / "nginx"


def site(conf: str, port: int, upstream: str, edits: dict[str, str]) -> str:
    """The shipped site file, listening on loopback `port`, proxying to `upstream`, edited."""
    text = (DEPLOY / conf).read_text(encoding="utf-8")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    text = re.sub(r"server 127\.0\.0\.1:8501;", f"server {upstream};", text)
    for old, new in edits.items():
        assert old in text, f"{conf} has no {old!r} to change"
        text = text.replace(old, new)
    return text


class Proxy:
    """nginx on a loopback port, in front of one lab server."""

    def __init__(self, folder: Path, port: int, path: str):
        self.folder, self.port = folder, port
        self.base = f"http://127.0.0.1:{port}{path}"  # with the lab's path prefix
        self.logs = folder
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        conf = self.folder / "nginx.conf"
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.folder), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "stderr.log").open("a"),  # a file: an unread pipe would fill up
        )
        _wait_for_port(self.port, self.proc, self.folder)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def blip(self, seconds: float) -> None:
        """Drop every connection and refuse new ones for `seconds`, as a network blip would."""
        self.stop()
        time.sleep(seconds)
        self.start()


@contextmanager
def nginx_in_front(lab_url: str, conf: str = "dllab.conf", edits: dict[str, str] | None = None):
    """nginx on a free loopback port in front of the lab at `lab_url`: a Proxy."""
    assert Path(NGINX).exists(), "Debian's nginx is missing: run `make test`, it installs it"
    lab = urlsplit(lab_url)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="dllab-nginx-") as tmp:
        (Path(tmp) / "site.conf").write_text(site(conf, port, lab.netloc, edits or {}))
        (Path(tmp) / "nginx.conf").write_text(NGINX_MAIN.format(dir=tmp, workers=1))
        proxy = Proxy(Path(tmp), port, lab.path)
        proxy.start()
        try:
            yield proxy
        finally:
            proxy.stop()


def _wait_for_port(port: int, proc: subprocess.Popen, folder: Path) -> None:
    end = time.time() + 20
    while time.time() < end:
        if proc.poll() is not None:
            said = (folder / "stderr.log").read_text(errors="replace")
            raise RuntimeError(f"nginx did not start: {said}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("nginx did not open its port")
