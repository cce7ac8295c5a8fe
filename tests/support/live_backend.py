"""A real ``rs-reasoner serve`` process on loopback, for tests and bench scripts that talk
to the backend over HTTP (fuzzing, load)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rs_reasoner.service.state import read_state

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


@dataclass
class LiveBackend:
    """A started backend: its process, URL, token and log file."""

    proc: subprocess.Popen
    url: str
    token: str
    log: Path

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client with the token (one keep-alive connection pool)."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> LiveBackend:
    """Start ``python -m rs_reasoner.service.server`` on a free port (CPU) and wait for its
    state file.

    Args:
        tmp: Folder for the state file, the log and the XDG state and cache homes.
        *extra: More server flags.
        env: Extra environment variables.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    state_file = tmp / "backend.json"
    log = tmp / "server.log"
    paths = [str(REPO), str(REPO / "backend"), os.environ.get("PYTHONPATH", "")]
    environ = dict(os.environ)
    environ.update(
        PYTHONPATH=os.pathsep.join(p for p in paths if p),
        XDG_STATE_HOME=str(tmp / "state"),
        XDG_CACHE_HOME=str(tmp / "cache"),
        PYTHONUNBUFFERED="1",
        **(env or {}),
    )
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rs_reasoner.service.server", "--port", "0",
             "--state-file", str(state_file), "--device", "cpu", *extra],
            cwd=REPO, env=environ, stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"backend exited with {proc.returncode}:\n{log.read_text()}")
        state: dict[str, Any] | None = read_state(state_file)
        if state is not None:
            return LiveBackend(proc=proc, url=state["url"], token=state["token"], log=log)
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"backend did not write its state file:\n{log.read_text()}")


def stop(backend: LiveBackend) -> int:
    """SIGTERM (then SIGKILL after 15 s); returns the exit code."""
    if backend.proc.poll() is None:
        backend.proc.send_signal(signal.SIGTERM)
        try:
            backend.proc.wait(15)
        except subprocess.TimeoutExpired:
            backend.proc.kill()
            backend.proc.wait(5)
    return backend.proc.returncode
