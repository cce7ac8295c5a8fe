"""The click-to-segment sessions a backend keeps.

Each session holds an image embedding (SAM 2.1 small: ~30 MB of features), so only
:data:`MAX_SESSIONS` are kept, the least recently used dropped first. SAM runs one call
at a time (sessions share one model and, typically, one GPU).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from rs_reasoner.interactive.predictors import PredictorSource
from rs_reasoner.interactive.schemas import PromptRequest, SessionRequest
from rs_reasoner.interactive.session import ClickSession

#: Sessions kept at once (a user clicks in one view; a second covers a second window).
MAX_SESSIONS = 2


class UnknownSession(LookupError):
    """No session has this id (closed, dropped for a newer one, or backend restarted)."""


class SessionStore:
    """Creates sessions, runs their prompts, forgets the oldest.

    Args:
        source: Where predictors come from, or a function giving it, called on the first
            session (so a backend that never segments by clicks never imports torch).
        max_sessions: Sessions kept.
    """

    def __init__(
        self,
        source: PredictorSource | Callable[[], PredictorSource],
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._source = source
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, ClickSession] = OrderedDict()
        self._lock = threading.Lock()  # the dict
        self._sam = threading.Lock()  # one SAM call at a time

    @property
    def source(self) -> PredictorSource:
        if callable(self._source) and not hasattr(self._source, "new"):
            self._source = self._source()
        return self._source  # type: ignore[return-value]

    def create(self, raster_path: str, request: SessionRequest) -> ClickSession:
        """Embed the request's extent in a new session."""
        with self._sam:
            session = ClickSession.from_raster(
                uuid.uuid4().hex, self.source.new(), raster_path, request
            )
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > self.max_sessions:
                _, old = self._sessions.popitem(last=False)
                old.close()
        return session

    def get(self, session_id: str) -> ClickSession:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise UnknownSession(session_id)
            self._sessions.move_to_end(session_id)
            return session

    def prompt(self, session_id: str, request: PromptRequest) -> dict[str, Any]:
        session = self.get(session_id)
        with self._sam:
            if session.predictor is None:  # dropped while this prompt waited
                raise UnknownSession(session_id)
            return session.prompt(request)

    def close(self, session_id: str) -> None:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            raise UnknownSession(session_id)
        session.close()

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), OrderedDict()
        for s in sessions:
            s.close()
