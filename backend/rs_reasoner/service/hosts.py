"""Only requests addressed to a loopback name are served (Host-header allow-list).

The backend listens on loopback, but a web page can still reach it by DNS rebinding: a
name the attacker controls is made to resolve to 127.0.0.1, and the browser then sends
the page's requests there with ``Host: attacker.example``. The token keeps the protected
paths safe; this check refuses every such request, public paths included (400), because
no legitimate client of a loopback backend names it otherwise.
"""

from __future__ import annotations

import ipaddress

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (IPv6 optionally in brackets)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str | None:
    """The name in a Host header without its port (``[::1]:8000`` → ``::1``), or None
    when the header is malformed."""
    header = header.strip().lower()
    if header.startswith("["):
        name, closed, rest = header[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        name, _, port = header.partition(":")
    if not name or (port and not port.isdigit()):
        return None
    return name


class LoopbackHostMiddleware:
    """Answers 400 to any HTTP request whose Host header names no loopback address
    (``127.0.0.1``, ``localhost``, ``[::1]``, with or without a port). A request without
    a Host header (HTTP/1.0 tools; browsers always send one) is served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            values = [v for k, v in scope.get("headers", []) if k.lower() == b"host"]
            header = values[0].decode("latin-1") if values else None
            name = host_name(header) if header is not None else "localhost"
            if len(values) > 1 or name is None or not is_loopback(name):
                shown = (header or "")[:100]
                response = JSONResponse(
                    {
                        "detail": f"Host '{shown}' is not served: this backend answers only "
                        "requests addressed to 127.0.0.1, localhost or [::1].",
                        "hint": "Use the URL from the backend's state file (e.g. "
                        "http://127.0.0.1:PORT); a web page under another name may not "
                        "call it.",
                    },
                    status_code=400,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
