"""A load generator for a served model (server/serving.py): `concurrency` clients on loopback,
each sending one request after another (a connection each, as curl does), until
`requests` are answered or MAX_SECONDS pass. Every WINDOW_SECONDS it records p50 and p99 latency
and throughput; the server adds its endpoint's queue depth. The clients run in a process of
their own (`python -m server.loadgen`), so that the server's interpreter serves and only
serves; a thread of the server reads their windows for the page (`Load.windows`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_CONCURRENCY = 64
MAX_REQUESTS = 5000
MAX_SECONDS = 30.0
WINDOW_SECONDS = 0.25
TOTALS = ("answered", "p50 ms", "p99 ms", "per second")
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Load:
    """One load test's progress, as the server sees it: its windows so far, and its end."""

    concurrency: int
    requests: int
    windows: list[dict] = field(default_factory=list)
    totals: dict = field(default_factory=lambda: dict.fromkeys(TOTALS, 0.0))
    errors: list[str] = field(default_factory=list)
    done: bool = False


def start(port: int, path: str, body: bytes, concurrency: int, requests: int, depth=lambda: 0) -> Load:
    """Start a load test against http://127.0.0.1:`port``path` in a process of its own."""
    load = Load(max(1, min(concurrency, MAX_CONCURRENCY)), max(1, min(requests, MAX_REQUESTS)))
    args = [str(a) for a in ("-m", "server.loadgen", port, path, load.concurrency, load.requests)]
    child = subprocess.Popen(
        [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    threading.Thread(target=_read, args=(load, child, body, depth), daemon=True, name="dllab-load").start()
    return load


def _read(load: Load, child: subprocess.Popen, body: bytes, depth) -> None:
    """Hand the child its request body, then take its lines as they come: windows, then totals."""
    killer = threading.Timer(MAX_SECONDS + 15, child.kill)  # bounded even if the child hangs
    killer.start()
    try:
        child.stdin.write(body.decode())
        child.stdin.close()
        for line in child.stdout:
            message = json.loads(line)
            if "window" in message:
                load.windows.append(message["window"] | {"queue depth": depth()})
            else:
                load.totals, load.errors = message["totals"], message["errors"]
        if child.wait() != 0 and not load.errors:
            load.errors.append(f"the load generator exited with {child.returncode}")
    except (OSError, ValueError) as error:
        load.errors.append(type(error).__name__)
    finally:
        killer.cancel()
        load.done = True


async def _drive(port: int, path: str, body: bytes, concurrency: int, requests: int) -> None:
    """In the child: the clients, a window printed every WINDOW_SECONDS, the totals last."""
    deadline = time.monotonic() + MAX_SECONDS
    left, errors, everything, window = [requests], [], [], []
    began = time.monotonic()
    finished = asyncio.Event()

    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()

    async def client() -> None:
        """Requests one after another, each on a connection of its own, as curl sends them: on a
        kept-alive one the server's response head and body, written apart, wait out the
        client's delayed ACK (40 ms on Linux) from the second request on."""
        while left[0] > 0 and time.monotonic() < deadline:
            left[0] -= 1
            sent = time.perf_counter()
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError as error:
                errors.append(f"could not connect: {error.strerror}")
                return
            try:
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                writer.write(head + body)
                status = await _response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                errors.append(type(error).__name__)
                return
            finally:
                writer.close()
            if status != 200:
                errors.append(f"HTTP {status}")
                return
            ms = (time.perf_counter() - sent) * 1000
            everything.append(ms)
            window.append(ms)

    async def watch() -> None:
        last = time.monotonic()
        while not finished.is_set():
            try:
                await asyncio.wait_for(finished.wait(), WINDOW_SECONDS)
            except TimeoutError:
                pass
            now = time.monotonic()
            taken, window[:] = list(window), []
            lat = np.asarray(taken) if taken else np.full(1, np.nan)
            p50, p99 = (float(np.percentile(lat, q)) for q in (50, 99))
            shown = {"t": now - began, "p50 ms": p50, "p99 ms": p99, "per second": len(taken) / (now - last)}
            print(json.dumps({"window": {k: (None if v != v else v) for k, v in shown.items()}}), flush=True)
            last = now

    watcher = asyncio.ensure_future(watch())
    await asyncio.gather(*(client() for _ in range(concurrency)))
    finished.set()
    await watcher
    lat = np.asarray(everything) if everything else np.zeros(1)
    totals = {
        "answered": len(everything),
        "p50 ms": float(np.percentile(lat, 50)),
        "p99 ms": float(np.percentile(lat, 99)),
        "per second": len(everything) / max(1e-9, time.monotonic() - began),
    }
    print(json.dumps({"totals": totals, "errors": sorted(set(errors))}), flush=True)


async def _response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length framed); its status."""
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


def request_body(image: np.ndarray) -> bytes:
    """The JSON body asking for one 28×28 image."""
    return json.dumps({"image": np.round(np.asarray(image, dtype=float), 3).tolist()}).encode()


def in_process(endpoint, image: np.ndarray, clients: int, each: int) -> tuple[list[float], int]:
    """The endpoint asked directly, without HTTP: `clients` callers at once, `each` requests one
    after another; each request's latency (ms) and the model calls the endpoint made."""

    async def caller(latencies: list[float]) -> None:
        for _ in range(each):
            start = time.perf_counter()
            await endpoint.answer(image)
            latencies.append((time.perf_counter() - start) * 1000)

    async def everyone() -> list[float]:
        latencies: list[float] = []
        await asyncio.gather(*(caller(latencies) for _ in range(clients)))
        return latencies

    calls = endpoint.batches
    return asyncio.run(everyone()), endpoint.batches - calls


def main() -> None:
    parser = argparse.ArgumentParser(description="A bounded load test on loopback (the body on stdin).")
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("requests", type=int)
    args = parser.parse_args()
    body = sys.stdin.read().encode()
    concurrency = max(1, min(args.concurrency, MAX_CONCURRENCY))
    asyncio.run(_drive(args.port, args.path, body, concurrency, max(1, min(args.requests, MAX_REQUESTS))))


if __name__ == "__main__":
    main()
