"""Click-to-segment endpoints (:mod:`rs_reasoner.interactive`).

* ``POST /interactive/sessions`` — read and embed an extent once (the slow step);
* ``POST /interactive/sessions/{id}/prompt`` — clicks and box → polygon (mask decoder only);
* ``DELETE /interactive/sessions/{id}`` — drop the embedding.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from rs_reasoner.interactive.schemas import PromptRequest, SessionRequest
from rs_reasoner.interactive.store import SessionStore, UnknownSession
from rs_reasoner.service.deps import Uploads
from rs_reasoner.service.errors import ApiError
from rs_reasoner.service.routes_jobs import raster_path

router = APIRouter(prefix="/interactive", tags=["click-to-segment"])


def get_sessions(request: Request) -> SessionStore:
    """The app's click-to-segment sessions."""
    return request.app.state.interactive


Sessions = Annotated[SessionStore, Depends(get_sessions)]


def _unknown(session_id: str) -> ApiError:
    return ApiError(
        404, f"Unknown click-to-segment session '{session_id}'.",
        "Sessions are few and kept in memory: start a new one (POST /interactive/sessions).",
    )


@router.post("/sessions", status_code=201)
def create_session(req: SessionRequest, sessions: Sessions, uploads: Uploads) -> dict[str, Any]:
    """Embed the extent with SAM; later prompts reuse the embedding."""
    session = sessions.create(raster_path(uploads, req.raster, req.upload_id), req)
    return {
        "id": session.id,
        "width": session.width,
        "height": session.height,
        "resolution": abs(session.transform.a),
        "crs": session.prompt_crs.to_string() if session.prompt_crs is not None else None,
        "encode_ms": round(session.encode_s * 1000, 1),
    }


@router.post("/sessions/{session_id}/prompt")
def prompt(session_id: str, req: PromptRequest, sessions: Sessions) -> dict[str, Any]:
    """Points (positive/negative) and a box → the object's polygon as GeoJSON."""
    try:
        return sessions.prompt(session_id, req)
    except UnknownSession:
        raise _unknown(session_id) from None


@router.delete("/sessions/{session_id}")
def close_session(session_id: str, sessions: Sessions) -> dict[str, Any]:
    """Forget the session and its embedding."""
    try:
        sessions.close(session_id)
    except UnknownSession:
        raise _unknown(session_id) from None
    return {"id": session_id, "closed": True}
