"""What the routes need from the app, as FastAPI dependencies.

:func:`~rs_reasoner.service.app.create_app` puts the shared objects on ``app.state``; a
route asks for one by annotating a parameter with :data:`Jobs`, :data:`Pipeline` or
:data:`Uploads`, so routes are plain functions and tests can override any dependency.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from rs_reasoner.service.jobs import JobManager, PipelineLike
from rs_reasoner.service.uploads import UploadStore

#: Declares the bearer scheme in OpenAPI ("Authorize" in /docs); the check itself is
#: :class:`~rs_reasoner.service.auth.BearerAuthMiddleware`, which runs before routing.
bearer_scheme = HTTPBearer(auto_error=False)


async def get_jobs(request: Request) -> JobManager:
    """The app's job manager."""
    return request.app.state.jobs


async def get_pipeline(request: Request) -> PipelineLike:
    """The app's segmentation pipeline."""
    return request.app.state.pipeline


async def get_uploads(request: Request) -> UploadStore:
    """The app's upload store."""
    return request.app.state.uploads


Jobs = Annotated[JobManager, Depends(get_jobs)]
Pipeline = Annotated[PipelineLike, Depends(get_pipeline)]
Uploads = Annotated[UploadStore, Depends(get_uploads)]
