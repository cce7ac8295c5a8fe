"""``POST /uploads``: a GeoTIFF streamed to disk, checked, and named by an id."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from rs_reasoner.service.deps import Jobs, Uploads
from rs_reasoner.service.errors import ApiError
from rs_reasoner.service.responses import ErrorResponse, UploadResponse
from rs_reasoner.service.uploads import check_raster

log = logging.getLogger(__name__)

router = APIRouter(tags=["uploads"])

#: Bytes gathered before each write (few large writes, bounded memory).
_WRITE_CHUNK = 4 * 1024**2


@router.post(
    "/uploads",
    response_model=UploadResponse,
    responses={
        413: {"model": ErrorResponse, "description": "Too large"},
        415: {"model": ErrorResponse, "description": "Not image/tiff"},
        422: {"model": ErrorResponse, "description": "Not a readable raster"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"image/tiff": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload(request: Request, uploads: Uploads, jobs: Jobs) -> dict[str, Any]:
    """Upload a GeoTIFF (raw body, ``Content-Type: image/tiff``); use the returned
    ``upload_id`` in ``POST /jobs`` instead of ``raster``."""
    _check_content_type(request)
    too_large = _too_large(uploads.max_bytes)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > uploads.max_bytes:
        raise too_large
    upload_id, part, final = uploads.new()
    try:
        size = await _stream_body(request, part, uploads.max_bytes, too_large)
        if size == 0:
            raise ApiError(422, "The upload is empty.", "Send the GeoTIFF as the body.")
        await run_in_threadpool(check_raster, part)
        os.replace(part, final)
    finally:
        with contextlib.suppress(OSError):
            part.unlink()
    uploads.evict(keep=jobs.active_raster_paths() | {str(final)})
    log.info("upload %s: %d bytes", upload_id, size)
    return {"upload_id": upload_id, "size": size}


def _check_content_type(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "image/tiff":
        raise ApiError(
            415,
            f"Uploads must have Content-Type image/tiff, not '{ctype or 'none'}'.",
            "Send the GeoTIFF file as the raw request body with 'Content-Type: image/tiff'.",
        )


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413,
        f"The upload is larger than the {max_bytes / 1024**3:.3g} GiB limit.",
        "Clip the raster to the area of interest, or give its path in 'raster' "
        "instead of uploading it.",
    )


async def _stream_body(request: Request, part: Path, max_bytes: int, too_large: ApiError) -> int:
    """Write the request body to ``part``; its size. Raises ``too_large`` past the limit
    (enforced while streaming: a body without Content-Length may be any size)."""
    size = 0
    with open(part, "wb") as fh:
        buffer = bytearray()
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise too_large
            buffer += chunk
            if len(buffer) >= _WRITE_CHUNK:
                await run_in_threadpool(fh.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await run_in_threadpool(fh.write, bytes(buffer))
    return size
