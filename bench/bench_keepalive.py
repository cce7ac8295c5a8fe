"""Latency of small requests on one keep-alive connection (what the plugin's polls pay).

Serves the real app (real pipeline on CPU, token auth) with uvicorn in this process twice:
on the socket ``rs-reasoner serve`` binds (``server._bind``: IPPROTO_TCP, so asyncio sets
TCP_NODELAY on each connection), and on a socket made the way it used to be (protocol 0:
no TCP_NODELAY, so a response written as headers then body waits for a delayed ACK).
Each variant: ``--requests`` ``GET /health`` on one HTTP/1.1 connection.

    .venv/bin/python bench/bench_keepalive.py --requests 300
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.service.app import create_app
from rs_reasoner.service.server import _bind

TOKEN = "bench-token"


def _protocol_zero_socket(host: str, port: int) -> socket.socket:
    """The listening socket as it was made before: protocol 0."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def measure(make_socket: Callable[[str, int], socket.socket], requests: int) -> dict[str, float]:
    """Milliseconds per ``GET /health`` on one keep-alive connection."""
    sock = make_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as uploads:
        app = create_app(SegmentationPipeline(device="cpu"), TOKEN, Path(uploads))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        times = []
        for i in range(requests + 5):
            t0 = time.perf_counter()
            conn.request("GET", "/health", headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET /health answered {response.status}")
            if i >= 5:  # warm-up: first connection, first route resolution
                times.append((time.perf_counter() - t0) * 1000)
        conn.close()
        server.should_exit = True
        thread.join(10)
    sock.close()
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        "max_ms": round(times[-1], 2),
        "mean_ms": round(statistics.fmean(times), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    summary = {
        "machine": f"{platform.system()} {platform.machine()}, python {platform.python_version()}",
        "requests": args.requests,
        "before (protocol 0, no TCP_NODELAY)": measure(_protocol_zero_socket, args.requests),
        "after (server._bind, TCP_NODELAY)": measure(_bind, args.requests),
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
