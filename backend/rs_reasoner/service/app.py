"""The HTTP API of the backend (see docs/architecture.md, "Service").

Every request except ``/openapi.json`` and ``/docs`` must carry
``Authorization: Bearer <token>``. Errors are JSON ``{"detail": ..., "hint": ...}`` with a
4xx status (5xx for bugs); no traceback ever reaches the client and the server keeps
serving.

This module only assembles the app; the pieces live beside it:

* :mod:`.routes_health`, :mod:`.routes_uploads`, :mod:`.routes_jobs` — the endpoints,
  as top-level functions on routers;
* :mod:`.deps` — the dependencies through which routes get the job manager, pipeline
  and upload store kept on ``app.state``;
* :mod:`.auth` — the bearer-token middleware; :mod:`.errors` — errors as JSON answers;
* :mod:`.hosts` — the Host-header allow-list; :mod:`.docs_page` — ``/docs`` without a CDN;
* :mod:`.uploads` — the upload store; :mod:`.responses` — the documented answer bodies.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool

from rs_reasoner import __version__
from rs_reasoner.interactive.predictors import default_source
from rs_reasoner.interactive.store import SessionStore
from rs_reasoner.service import (
    docs_page,
    routes_health,
    routes_interactive,
    routes_jobs,
    routes_models,
    routes_uploads,
)
from rs_reasoner.service.auth import PUBLIC_PATHS, BearerAuthMiddleware
from rs_reasoner.service.deps import bearer_scheme
from rs_reasoner.service.errors import ApiError, install_error_handlers
from rs_reasoner.service.hosts import LoopbackHostMiddleware
from rs_reasoner.service.jobs import JobManager, PipelineLike
from rs_reasoner.service.limits import JobLimits
from rs_reasoner.service.model_pulls import PullManager
from rs_reasoner.service.responses import COMMON_ERRORS
from rs_reasoner.service.routes_health import gpu_info
from rs_reasoner.service.uploads import UploadLimits, UploadStore

__all__ = ["ApiError", "create_app", "gpu_info"]


def create_app(
    pipeline: PipelineLike,
    token: str,
    upload_dir: Path,
    *,
    upload_limits: UploadLimits | None = None,
    jobs: JobManager | None = None,
    train_options: dict[str, Any] | None = None,
    job_limits: JobLimits | None = None,
    isolate_checks: bool = False,
    loopback_only: bool = True,
) -> FastAPI:
    """Build the API.

    Args:
        pipeline: The shared :class:`~rs_reasoner.pipeline.SegmentationPipeline`.
        token: Bearer token every request must carry.
        upload_dir: Folder for uploaded rasters (created if missing).
        upload_limits: Upload sizes, store size and body timeouts (default: the
            documented :class:`~rs_reasoner.service.uploads.UploadLimits`).
        jobs: Job manager to use (default: a new one over ``pipeline``); it is shut down
            with the app.
        train_options: Extra training options for every ``POST /train`` job of the
            default job manager (e.g. ``{"base_channels": 16}``: a smaller U-Net).
        job_limits: Time limits, queue bound and the rest of the default job manager's
            limits (default: the documented :class:`~rs_reasoner.service.limits.JobLimits`);
            its results go to ``upload_dir/results``.
        isolate_checks: The default job manager checks submissions in child processes
            (what ``rs-reasoner serve`` does): a file that blocks GDAL cannot freeze the
            server. Off for test doubles of the pipeline.
        loopback_only: Serve only requests whose Host header names a loopback address
            (:mod:`.hosts`); off only for a backend serving the network (--allow-remote).

    Returns:
        The FastAPI application (``app.state.jobs`` is the job manager,
        ``app.state.pipeline`` the pipeline, ``app.state.uploads`` the upload store).
    """
    if not token:
        raise ValueError("token must not be empty")
    if jobs is None:
        # Results beside the uploads: the same per-process folder, removed with it.
        jobs = JobManager(
            pipeline,
            train_options=train_options,
            limits=job_limits,
            result_dir=Path(upload_dir) / "results",
            isolate_checks=isolate_checks,
        )
    manager = jobs

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
        docs_url=None,  # Swagger UI loads from a CDN; docs_page serves /docs locally
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
        dependencies=[Depends(bearer_scheme)],
        responses=COMMON_ERRORS,
    )
    app.state.jobs = manager
    app.state.pipeline = pipeline
    app.state.uploads = UploadStore(Path(upload_dir), upload_limits)
    app.state.pulls = PullManager()  # model downloads (routes_models)
    app.state.interactive = SessionStore(lambda: default_source(pipeline.device))
    app.add_middleware(BearerAuthMiddleware, token=token, public_paths=PUBLIC_PATHS)
    if loopback_only:  # added last, so it runs first: before auth, public paths too
        app.add_middleware(LoopbackHostMiddleware)
    install_error_handlers(app)
    app.include_router(docs_page.router)
    app.include_router(routes_health.router)
    app.include_router(routes_uploads.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_models.router)
    app.include_router(routes_interactive.router)
    return app
