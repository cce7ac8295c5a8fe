"""Where the backend is: URL and token from the settings or from the backend's state file.

``rs-reasoner serve`` writes ``{"host", "port", "url", "token", "pid", "version"}`` to
``$XDG_STATE_HOME/rs-reasoner/backend.json`` (default ``~/.local/state/rs-reasoner/``) at
every start. Pure Python: no QGIS, no network.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE_NAME = "backend.json"


class BackendNotConfigured(Exception):
    """No backend URL in the settings and no (usable) state file.

    Attributes:
        message: What is missing.
        hint: How to fix it.
    """

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message} {hint}")
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class BackendEndpoint:
    """How to reach a backend.

    Attributes:
        url: Base URL without a trailing slash.
        token: Bearer token.
        source: ``settings`` or the state file's path.
        pid: The server's process id, when known from the state file.
        version: The backend's version, when known.
    """

    url: str
    token: str
    source: str
    pid: int | None = None
    version: str | None = None


def default_state_path() -> Path:
    """``$XDG_STATE_HOME/rs-reasoner/backend.json`` (default ``~/.local/state/...``),
    the place ``rs-reasoner serve`` writes to (platformdirs' user_state_dir)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "rs-reasoner" / "rs-reasoner" / STATE_FILE_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "rs-reasoner" / STATE_FILE_NAME
    xdg = os.environ.get("XDG_STATE_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "rs-reasoner" / STATE_FILE_NAME


def state_path(configured: str = "") -> Path:
    """The state file to use: the configured one, else the default."""
    return Path(os.path.expanduser(configured)) if configured.strip() else default_state_path()


def read_state(path: Path) -> dict[str, Any] | None:
    """The state file's content, or None when missing, unreadable or malformed."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not data.get("token"):
        return None
    if not data.get("url") and not data.get("port"):
        return None
    return data


def url_from_state(state: dict[str, Any]) -> str:
    """The base URL a state file describes."""
    if state.get("url"):
        return str(state["url"]).rstrip("/")
    host = str(state.get("host") or "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{int(state['port'])}"


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id exists (POSIX; always True elsewhere)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (OSError, OverflowError):
        return False
    return True


def resolve_endpoint(
    backend_url: str = "", token: str = "", state_file: str = ""
) -> BackendEndpoint:
    """The backend to talk to.

    Args:
        backend_url: URL from the settings; when set it wins over the state file.
        token: Token from the settings (used with ``backend_url``).
        state_file: State file from the settings (empty: the default place).

    Raises:
        BackendNotConfigured: No URL is set and the state file is missing or names a
            process that no longer runs.
    """
    if backend_url.strip():
        return BackendEndpoint(url=backend_url.strip().rstrip("/"), token=token.strip(),
                               source="settings")
    path = state_path(state_file)
    state = read_state(path)
    if state is None:
        raise BackendNotConfigured(
            f"No RS Reasoner backend is running (no state file at {path}).",
            "Start one with 'rs-reasoner serve' in the backend's environment, or set the "
            "backend's Python interpreter in RS Reasoner ▸ Settings and enable auto-start.",
        )
    pid = state.get("pid") if isinstance(state.get("pid"), int) else None
    if pid is not None and not pid_alive(pid):
        raise BackendNotConfigured(
            f"The RS Reasoner backend that wrote {path} (pid {pid}) is no longer running; "
            "it may have crashed.",
            "Start it again with 'rs-reasoner serve' (its log tells why it stopped), or "
            "enable auto-start in RS Reasoner ▸ Settings.",
        )
    return BackendEndpoint(
        url=url_from_state(state),
        token=str(state["token"]),
        source=str(path),
        pid=pid,
        version=str(state["version"]) if state.get("version") else None,
    )
