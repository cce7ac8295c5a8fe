"""Bearer-token authentication of every HTTP request.

A middleware rather than a route dependency: it answers 401 before the body is read, so
an unauthenticated upload is refused at once instead of after gigabytes.
"""

from __future__ import annotations

import secrets

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: Paths served without a token.
PUBLIC_PATHS = frozenset({"/openapi.json", "/docs"})

TOKEN_HINT = (
    "Send 'Authorization: Bearer <token>' with the token from the backend's state file "
    "(written by 'rs-reasoner serve'; it changes at every start)."
)


class BearerAuthMiddleware:
    """Refuses every HTTP request without the right bearer token (401), before routing."""

    def __init__(self, app: ASGIApp, token: str, public_paths: frozenset[str]) -> None:
        self.app = app
        self._token = token.encode()
        self._public = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self._public:
            problem = self._check(scope)
            if problem is not None:
                detail, error = problem
                response = JSONResponse(
                    {"detail": detail, "hint": TOKEN_HINT},
                    status_code=401,
                    headers={"WWW-Authenticate": f'Bearer realm="rs-reasoner"{error}'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> tuple[str, str] | None:
        values = [v for k, v in scope.get("headers", []) if k.lower() == b"authorization"]
        if not values:
            return "Missing Authorization header: this backend needs a bearer token.", ""
        scheme, _, credentials = values[0].strip().partition(b" ")
        credentials = credentials.strip()
        if scheme.lower() != b"bearer" or not credentials:
            return "The Authorization header must be 'Bearer <token>'.", ', error="invalid_request"'
        if len(values) > 1 or not secrets.compare_digest(credentials, self._token):
            return "Invalid token.", ', error="invalid_token"'
        return None
