"""The model manager's and click-to-segment's endpoints, and a QgsTask to call them.

:class:`ToolClient` adds those endpoints to :class:`~.api_client.ApiClient`;
:class:`BackendCallTask` connects (starting the backend if the settings say so) and
runs one function with the client off the GUI thread.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .api_client import ApiClient, BackendError
from .tasks import BackendConfig


class ToolClient(ApiClient):
    """ApiClient plus ``/models/{name}/...``, ``/pulls/{id}`` and ``/interactive``."""

    @classmethod
    def of(cls, client: ApiClient) -> ToolClient:
        return cls(client.url, client.token, client.timeout)

    def model_weights(self, name: str, hub: bool = True) -> dict[str, Any]:
        """GET /models/{name}/weights: per weight set present, size, licence."""
        return self._json("GET", f"/models/{quote(name)}/weights?hub={str(hub).lower()}")

    def pull(self, name: str, token: str | None = None) -> dict[str, Any]:
        """POST /models/{name}/pull: start a download; returns the pull to follow."""
        return self._post(f"/models/{quote(name)}/pull", {"token": token or None})

    def pull_status(self, pull_id: str) -> dict[str, Any]:
        return self._json("GET", f"/pulls/{pull_id}")

    def cancel_pull(self, pull_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/pulls/{pull_id}")

    def delete_weights(self, name: str) -> dict[str, Any]:
        return self._json("DELETE", f"/models/{quote(name)}/weights")

    def verify(self, name: str) -> dict[str, Any]:
        return self._post(f"/models/{quote(name)}/verify", None)

    def open_session(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /interactive/sessions: embed an extent (the slow step)."""
        return self._post("/interactive/sessions", body, timeout=max(self.timeout, 300.0))

    def prompt(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /interactive/sessions/{id}/prompt: clicks and box → GeoJSON."""
        return self._post(f"/interactive/sessions/{session_id}/prompt", body)

    def close_session(self, session_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/interactive/sessions/{session_id}")

    def _post(self, path: str, body: Any, timeout: float | None = None) -> dict[str, Any]:
        import json

        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        return self._json("POST", path, data=data, headers=headers, timeout=timeout)


class BackendCallTask(QgsTask):
    """Runs ``work(client, task)`` against the backend; ``done(result, error)`` follows on
    the GUI thread (``error``: a BackendError, or None)."""

    done = pyqtSignal(object, object)

    def __init__(self, description: str, backend: BackendConfig,
                 work: Callable[[ToolClient, BackendCallTask], Any]) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.backend = backend
        self.work = work
        self.result: Any = None
        self.error: BackendError | None = None

    def run(self) -> bool:
        try:
            client, _ = self.backend.connect(is_cancelled=self.isCanceled)
            self.result = self.work(ToolClient.of(client), self)
        except BackendError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - shown to the user, never lost in a thread
            self.error = BackendError(f"{type(exc).__name__}: {exc}",
                                      traceback.format_exc(limit=3))
        return self.error is None

    def finished(self, result: bool) -> None:  # noqa: ARG002 - QgsTask API
        if not result and self.error is None:  # cancelled before it ran
            self.error = BackendError("Cancelled.")
        self.done.emit(self.result, self.error)
