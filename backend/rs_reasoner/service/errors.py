"""How failures become HTTP answers: JSON ``{"detail": ..., "hint": ...}``, a 4xx status
for the client's mistakes, 500 for bugs, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rs_reasoner.errors import RsReasonerError

log = logging.getLogger(__name__)


class ApiError(RsReasonerError):
    """An error with an explicit HTTP status and optional extra JSON members."""

    def __init__(
        self, status_code: int, message: str, hint: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message, hint)
        self.status_code = status_code
        self.extra = extra


def unknown_job(job_id: str) -> ApiError:
    """404 for a job id the backend does not know."""
    return ApiError(
        404,
        f"Unknown job '{job_id}'.",
        "Jobs live in the backend's memory: they are gone after a restart, and only the "
        "most recent finished jobs are kept.",
    )


def format_validation(errors: list[dict[str, Any]]) -> str:
    """One readable sentence of pydantic validation errors."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        kind = err.get("type", "")
        if kind == "json_invalid":
            where = f" at character {loc[0]}" if loc else ""
            parts.append(f"the request body is not valid JSON{where}: {msg}")
        elif kind == "missing" and not loc:
            parts.append("the request body is missing: send a SegmentRequest as JSON")
        else:
            where = ".".join(loc)
            parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request"


def plain_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors without ``input``/``ctx`` (may be large or not JSON-able)."""
    return [
        {
            "type": str(e.get("type", "")),
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
        }
        for e in errors
    ]


async def rs_error(request: Request, exc: RsReasonerError) -> JSONResponse:
    """Our own errors: their message, hint, status and extra members."""
    body: dict[str, Any] = {"detail": exc.message, "hint": exc.hint}
    body.update(getattr(exc, "extra", {}))
    return JSONResponse(body, status_code=exc.status_code)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request that does not fit its schema: 422 naming the fields to fix."""
    errors = list(exc.errors())
    return JSONResponse(
        {
            "detail": format_validation(errors),
            "hint": "Fix the fields named above; /docs describes the request schema.",
            "errors": plain_errors(errors),
        },
        status_code=422,
    )


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own answers (unknown path, wrong method) in our JSON shape."""
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No such endpoint: {request.method} {request.url.path}."
    elif exc.status_code == 405:
        detail = f"Method {request.method} is not allowed on {request.url.path}."
    return JSONResponse(
        {"detail": detail, "hint": None},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def bug(request: Request, exc: Exception) -> JSONResponse:
    """Anything else is a bug: logged in full, answered 500 without internals."""
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {
            "detail": f"Internal error: {type(exc).__name__}.",
            "hint": "This is a bug in RS Reasoner; the backend log has the details. "
            "The backend keeps running.",
        },
        status_code=500,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure of ``app`` to a JSON answer."""
    app.exception_handler(RsReasonerError)(rs_error)
    app.exception_handler(RequestValidationError)(validation_error)
    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(Exception)(bug)
