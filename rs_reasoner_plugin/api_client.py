"""A small, blocking HTTP client for the backend's API (docs/architecture.md, "Service").

Blocking on purpose: it is only called from QgsTask.run() or a Processing algorithm, never
on the GUI thread. Standard library only (urllib, json). Every failure becomes a
:class:`BackendError` with a message and a hint that says what to do.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

#: Job states after which nothing changes any more.
FINISHED = frozenset({"succeeded", "failed", "cancelled"})

_START_HINT = (
    "Start the backend with 'rs-reasoner serve' in its Python environment, or set its "
    "interpreter in RS Reasoner ▸ Settings and enable auto-start."
)


class BackendError(Exception):
    """A request failed. ``str()`` gives message and hint together.

    Attributes:
        message: What went wrong.
        hint: What to do about it (may be empty).
        status: HTTP status, or None when there was no HTTP answer.
        body: The decoded JSON error body, if any.
    """

    def __init__(
        self, message: str, hint: str = "", status: int | None = None, body: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or ""
        self.status = status
        self.body = body

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class BackendUnreachable(BackendError):
    """No HTTP answer at all (refused, timed out, DNS...)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002
        return None


#: Seconds to wait for one answer, unless the settings say otherwise.
REQUEST_TIMEOUT = 30.0


@dataclass
class ApiClient:
    """The backend's endpoints as methods.

    Attributes:
        url: Base URL, e.g. ``http://127.0.0.1:8765``.
        token: Bearer token from the state file or the settings.
        timeout: Seconds to wait for one answer.
    """

    url: str
    token: str
    timeout: float = REQUEST_TIMEOUT

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        # Never send loopback requests through a proxy configured for the internet.
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), _NoRedirect()
        )

    # -- endpoints -----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """GET /health: version, device, GPU, memory, loaded models."""
        return self._json("GET", "/health")

    def models(self) -> list[dict[str, Any]]:
        """GET /models: the registered models."""
        return list(self._json("GET", "/models").get("models", []))

    def openapi(self) -> dict[str, Any]:
        """GET /openapi.json: the request schemas (which options this backend takes)."""
        return self._json("GET", "/openapi.json")

    def upload(self, path: str) -> str:
        """POST /uploads with a GeoTIFF file; returns its ``upload_id``."""
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            out = self._json(
                "POST",
                "/uploads",
                data=fh,
                headers={"Content-Type": "image/tiff", "Content-Length": str(size)},
                timeout=max(self.timeout, 300.0),
            )
        upload_id = out.get("upload_id")
        if not upload_id:
            raise BackendError("The backend accepted the upload but returned no upload_id.",
                               "Check that the URL points at an RS Reasoner backend.")
        return str(upload_id)

    def submit(self, request: dict[str, Any]) -> str:
        """POST /jobs (a segmentation); returns the job id."""
        return self._post_job("/jobs", request)

    def train(self, request: dict[str, Any]) -> str:
        """POST /train (a fine-tuning job, ``TrainRequest``); returns the job id.

        The job is then followed like any other: :meth:`job`, :meth:`cancel`,
        :meth:`train_result`.
        """
        return self._post_job("/train", request)

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{id}: status, stage, progress, messages, error."""
        return self._json("GET", f"/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        """DELETE /jobs/{id}."""
        return self._json("DELETE", f"/jobs/{job_id}")

    def result(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{id}/result: a GeoJSON FeatureCollection."""
        out = self._json("GET", f"/jobs/{job_id}/result", timeout=max(self.timeout, 120.0))
        if out.get("type") != "FeatureCollection":
            raise BackendError("The backend's result is not a GeoJSON FeatureCollection.",
                               "Update the backend and the plugin to matching versions.")
        return out

    def train_result(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{id}/result of a training job: model, classes, best_miou, ..."""
        out = self._json("GET", f"/jobs/{job_id}/result")
        if not out.get("model"):
            raise BackendError("The backend's training result names no model.",
                               "Update the backend and the plugin to matching versions.")
        return out

    # -- plumbing ------------------------------------------------------------------------

    def _post_job(self, path: str, request: dict[str, Any]) -> str:
        body = json.dumps(request).encode("utf-8")
        out = self._json("POST", path, data=body, headers={"Content-Type": "application/json"})
        if not out.get("id"):
            raise BackendError("The backend accepted the job but returned no id.")
        return str(out["id"])

    def _json(
        self,
        method: str,
        path: str,
        data: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with self._opener.open(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise _http_error(exc, self.url) from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            raise _unreachable(exc, self.url) from None
        try:
            out = json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, ValueError):
            raise BackendError(
                f"{self.url}{path} did not answer with JSON.",
                "Check that the backend URL in RS Reasoner ▸ Settings points at an "
                "RS Reasoner backend.",
            ) from None
        if not isinstance(out, dict):
            raise BackendError(f"{self.url}{path} answered with unexpected JSON.")
        return out


def _unreachable(exc: BaseException, url: str) -> BackendUnreachable:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return BackendUnreachable(
            f"The RS Reasoner backend at {url} did not answer in time.",
            "It may be busy loading a model or stuck; check its log, or raise the request "
            "timeout in RS Reasoner ▸ Settings.",
        )
    if isinstance(reason, ConnectionRefusedError):
        return BackendUnreachable(
            f"The RS Reasoner backend at {url} is not running (connection refused).",
            _START_HINT,
        )
    text = str(getattr(reason, "strerror", None) or reason) or type(reason).__name__
    return BackendUnreachable(
        f"Cannot reach the RS Reasoner backend at {url} ({text}).", _START_HINT
    )


def _http_error(exc: urllib.error.HTTPError, url: str) -> BackendError:
    status = exc.code
    body: Any = None
    try:
        raw = exc.read()
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (OSError, UnicodeDecodeError, ValueError):
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    hint = body.get("hint") if isinstance(body, dict) else None
    if isinstance(detail, list):  # plain FastAPI validation errors
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d)
                           for d in detail)
    if status == 401:
        return BackendError(
            f"The backend at {url} refused the token ({detail or 'unauthorized'}).",
            "The token changes at every backend start: leave URL and token empty in "
            "RS Reasoner ▸ Settings to read them from the backend's state file, or copy "
            "the current token from it.",
            status,
            body,
        )
    if detail:
        return BackendError(str(detail), str(hint or ""), status, body)
    if status == 404:
        return BackendError(
            f"{url} has no such endpoint (HTTP 404).",
            "Check that the URL points at an RS Reasoner backend of a matching version.",
            status,
            body,
        )
    return BackendError(
        f"The backend answered HTTP {status} {exc.reason}.",
        "See the backend's log for details.",
        status,
        body,
    )
