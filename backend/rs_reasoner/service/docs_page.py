"""``GET /docs``: the API's endpoints as one self-contained HTML page.

FastAPI's Swagger UI loads its script and styles from a CDN: blank offline, and a third
party learns where the backend runs. This page is rendered here from the OpenAPI schema,
with no script and nothing external (its Content-Security-Policy forbids any); the full
schema stays at ``/openapi.json`` for tools.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

router = APIRouter()

_METHODS = ("get", "post", "put", "patch", "delete")
_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}"
    "code{background:#f3f3f3;padding:0 .2em}h2{margin-top:1.6em;font-size:1.1em}"
    "p.d{white-space:pre-wrap;margin:.3em 0 0 1em;color:#333}"
)


def _endpoint(method: str, path: str, op: dict[str, Any]) -> str:
    summary = html.escape(op.get("summary") or "")
    description = html.escape(op.get("description") or "")
    codes = ", ".join(html.escape(str(c)) for c in op.get("responses", {}))
    return (
        f"<h2><code>{method.upper()} {html.escape(path)}</code> {summary}</h2>"
        f"<p class='d'>{description}</p><p class='d'>Answers: {codes}</p>"
    )


def render(schema: dict[str, Any]) -> str:
    """The page for an OpenAPI schema."""
    info = schema.get("info", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(info.get('title', 'API'))}</title><style>{_STYLE}</style>",
        "</head><body>",
        f"<h1>{html.escape(info.get('title', 'API'))} {html.escape(info.get('version', ''))}</h1>",
        f"<p>{html.escape(info.get('description', ''))}</p>",
        "<p>Request and answer schemas: <a href='/openapi.json'>/openapi.json</a> "
        "(OpenAPI 3; any OpenAPI viewer or client generator reads it).</p>",
    ]
    for path, item in schema.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                parts.append(_endpoint(method, path, item[method]))
    parts.append("</body></html>")
    return "".join(parts)


@router.get("/docs", include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    """The endpoints, their summaries and status codes; nothing loaded from elsewhere."""
    return HTMLResponse(
        render(request.app.openapi()),
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )
