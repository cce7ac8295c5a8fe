"""The HTTP API of the backend (see docs/architecture.md, "Service").

Every request except ``/openapi.json`` and ``/docs`` must carry
``Authorization: Bearer <token>``. Errors are JSON ``{"detail": ..., "hint": ...}`` with a
4xx status (5xx for bugs); no traceback ever reaches the client and the server keeps
serving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import threading
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from rs_reasoner import __version__
from rs_reasoner.errors import RsReasonerError
from rs_reasoner.schemas import SegmentRequest, TrainRequest
from rs_reasoner.service.jobs import JobManager, JobStatus, PipelineLike

log = logging.getLogger(__name__)

#: Largest accepted upload.
MAX_UPLOAD_BYTES = 4 * 1024**3
#: Uploads kept on disk (least recently used dropped first, unless a job still needs them).
MAX_UPLOADS_KEPT = 32
#: Paths served without a token.
PUBLIC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect"})

_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_TOKEN_HINT = (
    "Send 'Authorization: Bearer <token>' with the token from the backend's state file "
    "(written by 'rs-reasoner serve'; it changes at every start)."
)


class ApiError(RsReasonerError):
    """An error with an explicit HTTP status and optional extra JSON members."""

    def __init__(
        self, status_code: int, message: str, hint: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message, hint)
        self.status_code = status_code
        self.extra = extra


# -- response models (for /docs; responses are built as dicts) ------------------------------


class ErrorResponse(BaseModel):
    detail: str
    hint: str | None = None


class HealthResponse(BaseModel):
    status: str = "ok"
    version: str
    device: str
    gpu_name: str | None = Field(None, description="CUDA device name; null on CPU.")
    gpu_memory_total: int | None = Field(None, description="Bytes; null on CPU.")
    gpu_memory_free: int | None = Field(None, description="Bytes; null on CPU.")
    loaded_models: list[str]
    queue_length: int = Field(description="Jobs waiting to run.")
    running_job: str | None = Field(None, description="Id of the running job.")


class WeightsInfo(BaseModel):
    repo_id: str
    filename: str | None = None
    revision: str | None = None
    purpose: str = ""
    available: bool


class ModelInfo(BaseModel):
    name: str
    modes: list[str]
    description: str
    default_for: list[str]
    weights: list[WeightsInfo]
    weights_available: bool = Field(description="All weights are on disk (or none needed).")
    loaded: bool
    trained: bool = Field(False, description="Trained here (rs-reasoner train, POST /train).")
    classes: list[str] | None = Field(
        None, description="The classes a trained model knows (query a subset); null otherwise."
    )


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class UploadResponse(BaseModel):
    upload_id: str
    size: int = Field(description="Bytes received.")


class JobCreated(BaseModel):
    id: str
    status: str


class JobError(BaseModel):
    detail: str
    hint: str | None = None


class JobInfo(BaseModel):
    id: str
    kind: str = Field("segment", description="segment or train")
    status: str = Field(description="queued, running, succeeded, failed or cancelled")
    stage: str
    progress: float = Field(description="0..1")
    messages: list[str]
    error: JobError | None = None
    created: str | None
    started: str | None = None
    finished: str | None = None
    model: str | None = None
    mode: str | None = None
    query: str = Field(description="The segmentation query; empty for training jobs.")
    reasoning: str | None = None
    feature_count: int | None = None
    cancel_requested: bool = False


class TrainResult(BaseModel):
    model: str = Field(description="Name of the trained model (use it in POST /jobs).")
    classes: list[str]
    best_miou: float | None = Field(description="Validation mIoU of the served weights.")
    best_epoch: int = Field(description="Epoch (1-based) of the served weights.")
    per_class_iou: dict[str, float | None]
    epochs_run: int
    checkpoint: str = Field(description="Path of the served weights (best.pt).")


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong token"},
}


# -- auth ------------------------------------------------------------------------------------


class BearerAuthMiddleware:
    """Refuses every HTTP request without the right bearer token (401), before routing.

    Runs before the body is read, so unauthenticated uploads are refused at once.
    """

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
                    {"detail": detail, "hint": _TOKEN_HINT},
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


# -- uploads ---------------------------------------------------------------------------------


class UploadStore:
    """Uploaded rasters: ``<upload_dir>/<upload_id>.tif``, least recently used dropped."""

    def __init__(self, directory: Path, max_kept: int = MAX_UPLOADS_KEPT) -> None:
        self.directory = directory
        self.max_kept = max_kept
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)

    def new(self) -> tuple[str, Path, Path]:
        """A fresh id, the temporary path to stream into and the final path."""
        upload_id = uuid.uuid4().hex
        final = self.directory / f"{upload_id}.tif"
        return upload_id, final.with_suffix(".part"), final

    def path(self, upload_id: str) -> Path | None:
        """The file of an upload (marked as recently used), or None."""
        if not _UPLOAD_ID.match(upload_id):
            return None
        path = self.directory / f"{upload_id}.tif"
        with self._lock:
            try:
                os.utime(path)
            except OSError:
                return None
        return path

    def evict(self, keep: set[str]) -> None:
        """Delete the oldest uploads beyond ``max_kept``, except paths in ``keep``."""
        with self._lock:
            files = []
            for p in self.directory.glob("*.tif"):
                with contextlib.suppress(OSError):
                    files.append((p.stat().st_mtime, p))
            files.sort()
            excess = len(files) - self.max_kept
            for _, p in files:
                if excess <= 0:
                    break
                if str(p) in keep:
                    continue
                with contextlib.suppress(OSError):
                    p.unlink()
                    log.info("removed old upload %s", p.name)
                excess -= 1


def _check_raster(path: Path) -> None:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                if ds.count < 1 or ds.width < 1 or ds.height < 1:
                    raise ApiError(422, "The uploaded raster has no pixels or no bands.")
                # Read the last pixel: catches files cut off during the upload.
                ds.read(1, window=Window(ds.width - 1, ds.height - 1, 1, 1))
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything GDAL dislikes is a bad upload
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ApiError(
            422,
            f"The uploaded file is not a raster GDAL can read ({reason[:300]}).",
            "Upload a GeoTIFF (Content-Type: image/tiff), e.g. exported with "
            "'Save Raster Layer As' in QGIS.",
        ) from None


# -- error mapping ---------------------------------------------------------------------------


def _format_validation(errors: list[dict[str, Any]]) -> str:
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


def _plain_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors without ``input``/``ctx`` (may be large or not JSON-able)."""
    return [
        {
            "type": str(e.get("type", "")),
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
        }
        for e in errors
    ]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RsReasonerError)
    async def _rs_error(request: Request, exc: RsReasonerError) -> JSONResponse:
        body: dict[str, Any] = {"detail": exc.message, "hint": exc.hint}
        body.update(getattr(exc, "extra", {}))
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        return JSONResponse(
            {
                "detail": _format_validation(errors),
                "hint": "Fix the fields named above; /docs describes the request schema.",
                "errors": _plain_errors(errors),
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
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

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            {
                "detail": f"Internal error: {type(exc).__name__}.",
                "hint": "This is a bug in RS Reasoner; the backend log has the details. "
                "The backend keeps running.",
            },
            status_code=500,
        )


# -- helpers ---------------------------------------------------------------------------------


def gpu_info(device: str) -> dict[str, Any]:
    """``gpu_name``, ``gpu_memory_total`` and ``gpu_memory_free`` (bytes) of a CUDA device;
    all None for CPU devices or when torch/CUDA is unavailable."""
    info: dict[str, Any] = {"gpu_name": None, "gpu_memory_total": None, "gpu_memory_free": None}
    if not device.startswith("cuda"):
        return info
    try:
        import torch

        if not torch.cuda.is_available():
            return info
        _, _, idx = device.partition(":")
        index = int(idx) if idx else torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        info.update(
            gpu_name=torch.cuda.get_device_name(index),
            gpu_memory_total=int(total),
            gpu_memory_free=int(free),
        )
    except Exception:  # noqa: BLE001 - health must answer even if CUDA misbehaves
        log.debug("GPU query failed", exc_info=True)
    return info


def _unknown_job(job_id: str) -> ApiError:
    return ApiError(
        404,
        f"Unknown job '{job_id}'.",
        "Jobs live in the backend's memory: they are gone after a restart, and only the "
        "most recent finished jobs are kept.",
    )


# -- app -------------------------------------------------------------------------------------


def create_app(
    pipeline: PipelineLike,
    token: str,
    upload_dir: Path,
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    jobs: JobManager | None = None,
    train_options: dict[str, Any] | None = None,
) -> FastAPI:
    """Build the API.

    Args:
        pipeline: The shared :class:`~rs_reasoner.pipeline.SegmentationPipeline`.
        token: Bearer token every request must carry.
        upload_dir: Folder for uploaded rasters (created if missing).
        max_upload_bytes: Largest accepted upload.
        jobs: Job manager to use (default: a new one over ``pipeline``); it is shut down
            with the app.
        train_options: Extra training options for every ``POST /train`` job of the
            default job manager (e.g. ``{"base_channels": 16}``: a smaller U-Net).

    Returns:
        The FastAPI application (``app.state.jobs`` is the job manager).
    """
    if not token:
        raise ValueError("token must not be empty")
    manager = jobs if jobs is not None else JobManager(pipeline, train_options=train_options)
    uploads = UploadStore(Path(upload_dir))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(manager.shutdown)

    app = FastAPI(
        title="RS Reasoner backend",
        version=__version__,
        description="Segments remote-sensing rasters by description and returns "
        "georeferenced polygons. Every endpoint needs 'Authorization: Bearer <token>' "
        "(the token is in the backend's state file).",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
        # Declares the bearer scheme in OpenAPI ("Authorize" in /docs); the middleware
        # enforces it.
        dependencies=[Depends(HTTPBearer(auto_error=False))],
        responses=_ERRORS,
    )
    app.state.jobs = manager
    app.state.pipeline = pipeline
    app.state.uploads = uploads
    app.add_middleware(BearerAuthMiddleware, token=token, public_paths=PUBLIC_PATHS)
    _install_error_handlers(app)

    @app.get("/health", response_model=HealthResponse, tags=["service"])
    def health() -> dict[str, Any]:
        """Version, device, GPU and its memory, loaded models, queue length."""
        device = pipeline.device
        current = manager.current()
        return {
            "status": "ok",
            "version": __version__,
            "device": device,
            **gpu_info(device),
            "loaded_models": list(pipeline.loaded_models()),
            "queue_length": manager.queue_length(),
            "running_job": current.id if current is not None else None,
        }

    @app.get("/models", response_model=ModelsResponse, tags=["service"])
    def models() -> dict[str, Any]:
        """Registered models, their modes, defaults and whether their weights are present."""
        from rs_reasoner import weights
        from rs_reasoner.segmenters import registry

        loaded = set(pipeline.loaded_models())
        out = []
        for spec in registry.specs():
            ws = [
                {
                    "repo_id": w.repo_id,
                    "filename": w.filename,
                    "revision": w.revision,
                    "purpose": w.purpose,
                    "available": weights.is_available(w),
                }
                for w in spec.weights
            ]
            out.append(
                {
                    "name": spec.name,
                    "modes": [m.value for m in spec.modes],
                    "description": spec.description,
                    "default_for": [m.value for m in spec.default_for],
                    "weights": ws,
                    "weights_available": all(w["available"] for w in ws),
                    "loaded": spec.name in loaded,
                    "trained": "trained" in spec.tags,
                    "classes": list(spec.classes) if spec.classes is not None else None,
                }
            )
        return {"models": out}

    @app.post(
        "/uploads",
        response_model=UploadResponse,
        tags=["uploads"],
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
    async def upload(request: Request) -> dict[str, Any]:
        """Upload a GeoTIFF (raw body, ``Content-Type: image/tiff``); use the returned
        ``upload_id`` in ``POST /jobs`` instead of ``raster``."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "image/tiff":
            raise ApiError(
                415,
                f"Uploads must have Content-Type image/tiff, not '{ctype or 'none'}'.",
                "Send the GeoTIFF file as the raw request body with 'Content-Type: image/tiff'.",
            )
        limit_text = f"{max_upload_bytes / 1024**3:.3g} GiB"
        too_large = ApiError(
            413,
            f"The upload is larger than the {limit_text} limit.",
            "Clip the raster to the area of interest, or give its path in 'raster' "
            "instead of uploading it.",
        )
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_upload_bytes:
            raise too_large
        upload_id, part, final = uploads.new()
        size = 0
        try:
            with open(part, "wb") as fh:
                buffer = bytearray()
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > max_upload_bytes:
                        raise too_large
                    buffer += chunk
                    if len(buffer) >= 4 * 1024**2:
                        await run_in_threadpool(fh.write, bytes(buffer))
                        buffer.clear()
                if buffer:
                    await run_in_threadpool(fh.write, bytes(buffer))
            if size == 0:
                raise ApiError(422, "The upload is empty.", "Send the GeoTIFF as the body.")
            await run_in_threadpool(_check_raster, part)
            os.replace(part, final)
        finally:
            with contextlib.suppress(OSError):
                part.unlink()
        uploads.evict(keep=manager.active_raster_paths() | {str(final)})
        log.info("upload %s: %d bytes", upload_id, size)
        return {"upload_id": upload_id, "size": size}

    @app.post(
        "/jobs",
        status_code=202,
        response_model=JobCreated,
        tags=["jobs"],
        responses={
            404: {"model": ErrorResponse, "description": "Unknown upload or model"},
            422: {"model": ErrorResponse, "description": "Invalid request"},
        },
    )
    def submit(req: SegmentRequest) -> dict[str, Any]:
        """Queue a segmentation job (validated at once; bad requests get a 4xx)."""
        job = manager.submit(req, _raster_path(req.raster, req.upload_id))
        return {"id": job.id, "status": job.to_dict()["status"]}

    def _raster_path(raster: str | None, upload_id: str | None) -> str:
        if upload_id is None:
            return str(raster)
        path = uploads.path(upload_id)
        if path is None:
            raise ApiError(
                404,
                f"Unknown upload_id '{upload_id}'.",
                "Upload the raster again with POST /uploads: uploads are kept only "
                f"while the backend runs (the {uploads.max_kept} most recent).",
            )
        return str(path)

    @app.post(
        "/train",
        status_code=202,
        response_model=JobCreated,
        tags=["jobs"],
        responses={
            404: {"model": ErrorResponse, "description": "Unknown upload"},
            422: {"model": ErrorResponse, "description": "Invalid request"},
        },
    )
    def submit_training(req: TrainRequest) -> dict[str, Any]:
        """Queue a training job: a raster and labelled parcels → a new model ``name``
        (validated at once; bad requests get a 4xx). Poll ``GET /jobs/{id}``; the result
        names the model, which ``GET /models`` then lists and ``POST /jobs`` can use.
        The same ``name`` again resumes from its last checkpoint."""
        job = manager.submit_training(req, _raster_path(req.raster, req.upload_id))
        return {"id": job.id, "status": job.to_dict()["status"]}

    @app.get(
        "/jobs/{job_id}",
        response_model=JobInfo,
        tags=["jobs"],
        responses={404: {"model": ErrorResponse}},
    )
    def job_status(job_id: str) -> dict[str, Any]:
        """Status, stage, progress (0..1), messages and error of a job."""
        job = manager.get(job_id)
        if job is None:
            raise _unknown_job(job_id)
        return job.to_dict()

    @app.delete(
        "/jobs/{job_id}",
        response_model=JobInfo,
        tags=["jobs"],
        responses={404: {"model": ErrorResponse}},
    )
    def cancel(job_id: str) -> dict[str, Any]:
        """Cancel a job: queued ones at once, running ones after the current tile.
        Returns the job's status (``cancel_requested`` is true until it stops)."""
        job = manager.cancel(job_id)
        if job is None:
            raise _unknown_job(job_id)
        return job.to_dict()

    @app.get(
        "/jobs/{job_id}/result",
        tags=["jobs"],
        responses={
            200: {
                "model": TrainResult,
                "description": "Segmentation: a GeoJSON FeatureCollection with a 'crs' "
                "member. Training: the trained model (TrainResult) as JSON.",
                "content": {"application/geo+json": {}},
            },
            404: {"model": ErrorResponse},
            409: {"model": ErrorResponse, "description": "Not succeeded (yet)"},
        },
    )
    def job_result(job_id: str) -> JSONResponse:
        """The result of a succeeded job: polygons as a GeoJSON FeatureCollection, or for
        a training job the trained model (name, classes, scores, checkpoint)."""
        job = manager.get(job_id)
        if job is None:
            raise _unknown_job(job_id)
        info = job.to_dict()
        status = info["status"]
        if status == JobStatus.succeeded.value:
            if job.kind == "train":
                return JSONResponse(job.result, media_type="application/json")
            return JSONResponse(job.result, media_type="application/geo+json")
        if status == JobStatus.failed.value:
            error = info["error"] or {}
            raise ApiError(
                409,
                f"Job {job_id} failed, so it has no result: {error.get('detail')}",
                error.get("hint"),
                status=status,
            )
        if status == JobStatus.cancelled.value:
            raise ApiError(
                409, f"Job {job_id} was cancelled; it has no result.", None, status=status
            )
        raise ApiError(
            409,
            f"Job {job_id} is {status}; its result is not ready yet.",
            f"Poll GET /jobs/{job_id} until its status is 'succeeded'.",
            status=status,
        )

    return app
