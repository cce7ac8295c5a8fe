"""A backend started by the plugin as a child process.

The interpreter comes from the settings (a virtual environment with the backend
installed); the plugin's own Python never imports the backend. ``start`` only spawns the
process; ``wait_ready`` polls the state file and ``/health`` and must run off the GUI
thread (QgsTask). The plugin stops the backend on unload if it started it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .api_client import ApiClient, BackendError
from .backend_state import BackendEndpoint, read_state, url_from_state

#: Seconds to wait for a started backend to answer.
START_TIMEOUT = 120.0


class BackendStartError(BackendError):
    """The backend could not be started."""


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class BackendProcess:
    """Starts, watches and stops one backend child process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._state_file: Path | None = None
        self.log_path: Path | None = None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        """Whether the plugin started a backend that still runs."""
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    def start(self, python: str, state_file: Path, device: str = "auto",
              extra_env: dict[str, str] | None = None) -> int:
        """Spawn ``python -m rs_reasoner.service.server`` writing to ``state_file``.

        Returns the child's pid (an already running child is reused).

        Raises:
            BackendStartError: No interpreter is set, it does not exist, or it cannot run.
        """
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self._proc.pid
            exe = self._interpreter(python)
            state_file = Path(state_file)
            state_file.parent.mkdir(parents=True, exist_ok=True)
            self.log_path = state_file.parent / "backend-plugin.log"
            cmd = [exe, "-m", "rs_reasoner.service.server", "--port", "0",
                   "--state-file", str(state_file)]
            if device and device != "auto":
                cmd += ["--device", device]
            env = dict(os.environ)
            env.update(extra_env or {})
            env["PYTHONUNBUFFERED"] = "1"
            # QGIS's own Python paths must not leak into the backend's interpreter.
            for var in ("PYTHONHOME", "QGIS_PREFIX_PATH"):
                env.pop(var, None)
            try:
                with open(self.log_path, "wb") as log:
                    self._proc = subprocess.Popen(
                        cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        env=env, start_new_session=(os.name != "nt"),
                    )
            except OSError as exc:
                raise BackendStartError(
                    f"Cannot start the backend with {exe}: {exc.strerror or exc}.",
                    "Set the Python interpreter of the backend's virtual environment in "
                    "RS Reasoner ▸ Settings (e.g. /path/to/.venv/bin/python).",
                ) from None
            self._state_file = state_file
            return self._proc.pid

    @staticmethod
    def _interpreter(python: str) -> str:
        python = os.path.expanduser(python.strip())
        if not python:
            raise BackendStartError(
                "No RS Reasoner backend is running and no backend interpreter is set.",
                "Start it with 'rs-reasoner serve', or set the Python interpreter of the "
                "backend's virtual environment in RS Reasoner ▸ Settings.",
            )
        exe = python if os.path.sep in python else (shutil.which(python) or python)
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            raise BackendStartError(
                f"The backend interpreter {python} does not exist or is not executable.",
                "Set the Python interpreter of the backend's virtual environment in "
                "RS Reasoner ▸ Settings (e.g. /path/to/.venv/bin/python).",
            )
        return exe

    def wait_ready(self, timeout: float = START_TIMEOUT, request_timeout: float = 5.0,
                   is_cancelled: Callable[[], bool] | None = None) -> BackendEndpoint:
        """Block until the child has written its state file and answers ``/health``.

        Raises:
            BackendStartError: It exited, or did not answer within ``timeout``.
            BackendError: Cancelled (message says so).
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                proc, state_file = self._proc, self._state_file
            if proc is None or state_file is None:
                raise BackendStartError("The backend was not started.")
            code = proc.poll()
            if code is not None:
                log = _tail(self.log_path) if self.log_path else ""
                hint = ("Is the backend installed in that environment "
                        "('pip install -e .' in the repository)? ")
                if "No module named" not in log:
                    hint = ""
                raise BackendStartError(
                    f"The backend exited with status {code} while starting"
                    + (f":\n{log}" if log else "."),
                    hint + f"Its full log is {self.log_path}.",
                )
            state = read_state(state_file)
            if state is not None and state.get("pid") == proc.pid:
                endpoint = BackendEndpoint(url=url_from_state(state), token=str(state["token"]),
                                           source=str(state_file), pid=proc.pid,
                                           version=state.get("version"))
                with contextlib.suppress(BackendError):
                    ApiClient(endpoint.url, endpoint.token, request_timeout).health()
                    return endpoint
            if is_cancelled is not None and is_cancelled():
                raise BackendError("Cancelled while waiting for the backend to start.")
            if time.monotonic() > deadline:
                raise BackendStartError(
                    f"The backend did not become ready within {timeout:.0f} s.",
                    f"See its log {self.log_path}.",
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the child (SIGTERM, then SIGKILL) if the plugin started it."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.terminate()  # SIGTERM: the server removes its state file and exits
            proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
