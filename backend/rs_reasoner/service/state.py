"""The backend's state file: where clients find the port, the token and the pid.

The file is JSON, written atomically (temp file + ``os.replace``) with mode 0600 because it
holds the bearer token. Its default place is ``platformdirs.user_state_dir("rs-reasoner")``
(``$XDG_STATE_HOME/rs-reasoner/backend.json`` on Linux).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rs_reasoner.atomic import pid_alive

__all__ = [
    "STATE_FILE_NAME",
    "default_state_path",
    "pid_alive",
    "read_state",
    "remove_state",
    "write_state",
]

STATE_FILE_NAME = "backend.json"


def default_state_path() -> Path:
    """The default state file, ``user_state_dir("rs-reasoner")/backend.json``.

    Honours ``XDG_STATE_HOME`` on Linux (platformdirs reads it at call time).
    """
    import platformdirs

    return Path(platformdirs.user_state_dir("rs-reasoner")) / STATE_FILE_NAME


def write_state(path: Path | str, host: str, port: int, token: str, pid: int, version: str) -> Path:
    """Write the state file atomically, readable only by the current user.

    Args:
        path: The state file; missing parent folders are created (mode 0700).
        host: Address the server is bound to.
        port: Port it listens on.
        token: Bearer token every request must carry.
        pid: Process id of the server.
        version: Backend version.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    url_host = f"[{host}]" if ":" in host else host
    state = {
        "host": host,
        "port": port,
        "url": f"http://{url_host}:{port}",
        "token": token,
        "pid": pid,
        "version": version,
        "started": time.time(),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def read_state(path: Path | str) -> dict[str, Any] | None:
    """Read the state file.

    Args:
        path: The state file.

    Returns:
        Its content, or None when it is missing, unreadable or not a JSON object.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_state(path: Path | str, pid: int) -> bool:
    """Delete the state file, but only if it still names ``pid``.

    A newer server that took over the same state file is left alone.

    Args:
        path: The state file.
        pid: The process id the file must name.

    Returns:
        True when the file was removed.
    """
    state = read_state(path)
    if state is None or state.get("pid") != pid:
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
