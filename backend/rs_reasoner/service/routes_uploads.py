"""``POST /uploads``: a GeoTIFF streamed to disk, checked, and named by an id.

The body is checked as it arrives: TIFF signature in the first bytes, size against the
limit, room in the upload store, no stall and no trickle (see
:class:`~rs_reasoner.service.uploads.UploadLimits`), so a bad upload is refused before
it is written in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from rs_reasoner.service.deps import Jobs, Uploads
from rs_reasoner.service.errors import ApiError
from rs_reasoner.service.responses import ErrorResponse, UploadResponse
from rs_reasoner.service.uploads import (
    SIGNATURE_BYTES,
    UploadLimits,
    UploadStore,
    check_raster,
    check_signature,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["uploads"])

#: Bytes gathered before each write (few large writes, bounded memory).
_WRITE_CHUNK = 4 * 1024**2


@router.post(
    "/uploads",
    response_model=UploadResponse,
    responses={
        408: {"model": ErrorResponse, "description": "The body stalled or trickled"},
        413: {"model": ErrorResponse, "description": "Too large"},
        415: {"model": ErrorResponse, "description": "Not image/tiff"},
        422: {"model": ErrorResponse, "description": "Not a readable GeoTIFF"},
        507: {"model": ErrorResponse, "description": "No room in the upload store"},
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
    length = request.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else None
    if declared is not None and declared > uploads.max_bytes:
        raise _too_large(uploads.max_bytes)
    upload_id, part, final = uploads.new()
    try:
        if declared:  # room for all of it before a byte is written
            uploads.reserve(upload_id, declared, keep=jobs.active_raster_paths())
        size = await _stream_body(
            request, part, uploads, upload_id, declared or 0, jobs.active_raster_paths
        )
        if size == 0:
            raise ApiError(422, "The upload is empty.", "Send the GeoTIFF as the body.")
        await run_in_threadpool(check_raster, part)
        os.replace(part, final)
    finally:
        uploads.release(upload_id)
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


async def _chunks(request: Request, limits: UploadLimits) -> AsyncIterator[bytes]:
    """The body's chunks; 408 when none comes for ``idle_timeout_s`` or the average rate
    falls below ``min_bytes_per_s`` after ``grace_s``."""
    body = request.stream().__aiter__()
    start = time.monotonic()
    size = 0
    while True:
        try:
            chunk = await asyncio.wait_for(body.__anext__(), limits.idle_timeout_s)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise ApiError(
                408,
                f"The upload stalled: no data for {limits.idle_timeout_s:g} s.",
                "Send the file in one go; if the network is that slow, give the raster's "
                "path in 'raster' instead of uploading it.",
            ) from None
        size += len(chunk)
        elapsed = time.monotonic() - start
        if elapsed > limits.grace_s and size < limits.min_bytes_per_s * elapsed:
            raise ApiError(
                408,
                f"The upload is too slow: {size / elapsed / 1024:.0f} KiB/s on average after "
                f"{elapsed:.0f} s; at least {limits.min_bytes_per_s / 1024:.0f} KiB/s is "
                "needed.",
                "Give the raster's path in 'raster' instead of uploading it.",
            )
        yield chunk


async def _stream_body(
    request: Request,
    part: Path,
    uploads: UploadStore,
    upload_id: str,
    reserved: int,
    in_use: Callable[[], set[str]],
) -> int:
    """Write the request body to ``part``; its size.

    Refused on the way: bytes that do not start a TIFF (422), past the size limit (413,
    enforced here since a body without Content-Length may be any size), no room (507),
    stalls and trickles (408).
    """
    size = 0
    head = b""
    with open(part, "wb") as fh:
        buffer = bytearray()
        async for chunk in _chunks(request, uploads.limits):
            size += len(chunk)
            if size > uploads.max_bytes:
                raise _too_large(uploads.max_bytes)
            if len(head) < SIGNATURE_BYTES:
                head = (head + chunk)[:SIGNATURE_BYTES]
                if len(head) == SIGNATURE_BYTES:
                    check_signature(head)
            buffer += chunk
            if len(buffer) >= _WRITE_CHUNK:
                if size > reserved:
                    uploads.reserve(upload_id, size - reserved, keep=in_use())
                    reserved = size
                await run_in_threadpool(fh.write, bytes(buffer))
                buffer.clear()
        if 0 < size < SIGNATURE_BYTES:
            check_signature(head)
        if buffer:
            if size > reserved:
                uploads.reserve(upload_id, size - reserved, keep=in_use())
            await run_in_threadpool(fh.write, bytes(buffer))
    return size
