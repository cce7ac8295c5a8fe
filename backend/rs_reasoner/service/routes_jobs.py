"""The job endpoints: ``POST /jobs`` and ``POST /train`` queue work; ``GET``/``DELETE
/jobs/{id}`` follow or cancel it; ``GET /jobs/{id}/result`` fetches what it made.

The submissions are ``async``: the checks that open files run in threads of their own
(:mod:`.checks`) and are awaited, so a raster that never opens holds no worker thread
and cannot starve ``/health``. Segmentation results are streamed from disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse, Response, StreamingResponse

from rs_reasoner.schemas import AnyTrainRequest, ReasonerTrainRequest, SegmentRequest
from rs_reasoner.service.deps import Jobs, Uploads
from rs_reasoner.service.errors import ApiError, unknown_job
from rs_reasoner.service.job import Job, JobStatus
from rs_reasoner.service.responses import (
    ErrorResponse,
    JobCreated,
    JobInfo,
    ReasonerTrainResult,
    TrainResult,
)
from rs_reasoner.service.uploads import UploadStore

router = APIRouter(tags=["jobs"])

_SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Invalid request, or its raster did not "
          "open within the check timeout"},
    429: {"model": ErrorResponse, "description": "Queue full, or too many submissions "
          "being checked"},
}

#: Bytes per chunk when streaming a result file.
_CHUNK = 1024 * 1024


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobCreated,
    responses={
        404: {"model": ErrorResponse, "description": "Unknown upload or model"},
        **_SUBMIT_ERRORS,
    },
)
async def submit(req: SegmentRequest, jobs: Jobs, uploads: Uploads) -> dict[str, Any]:
    """Queue a segmentation job (validated at once; bad requests get a 4xx)."""
    job = await jobs.submit_async(req, raster_path(uploads, req.raster, req.upload_id))
    return {"id": job.id, "status": job.to_dict()["status"]}


@router.post(
    "/train",
    status_code=202,
    response_model=JobCreated,
    responses={
        404: {"model": ErrorResponse, "description": "Unknown upload"},
        **_SUBMIT_ERRORS,
    },
)
async def submit_training(
    req: Annotated[AnyTrainRequest, Body(title="TrainBody")], jobs: Jobs, uploads: Uploads
) -> dict[str, Any]:
    """Queue a training job (validated at once; bad requests get a 4xx). Poll
    ``GET /jobs/{id}``; the result names the model, which ``GET /models`` then lists and
    ``POST /jobs`` can use. The same ``name`` again resumes from its last checkpoint.

    * ``kind: segmenter`` (the default): a raster and labelled parcels, or ``images``,
      ``masks`` and ``classes`` (an image folder, a mask folder, a class table file) → a
      segmenter.
    * ``kind: reasoner``: examples answering questions (a polygon layer over a raster
      with ``query_field`` or one ``query``, or an EarthReason-style folder) → the
      reasoning prompter fine-tuned with GRPO (mask IoU reward), served as a reasoning
      model; one line per GRPO step in the job's messages."""
    if isinstance(req, ReasonerTrainRequest) and not req.has_raster:
        path = req.examples  # a folder of examples: the checks' subject, no raster
    elif getattr(req, "images", None) is not None:
        path = req.images  # image + mask folders: no raster
    else:
        path = raster_path(uploads, req.raster, req.upload_id)
    job = await jobs.submit_training_async(req, path)
    return {"id": job.id, "status": job.to_dict()["status"]}


@router.get("/jobs/{job_id}", response_model=JobInfo, responses={404: {"model": ErrorResponse}})
async def job_status(job_id: str, jobs: Jobs) -> dict[str, Any]:
    """Status, stage, progress (0..1), messages and error of a job."""
    # async: a snapshot under a lock held for microseconds; no worker-thread hop per poll.
    return _job(jobs.get(job_id), job_id).to_dict()


@router.delete("/jobs/{job_id}", response_model=JobInfo, responses={404: {"model": ErrorResponse}})
async def cancel(job_id: str, jobs: Jobs) -> dict[str, Any]:
    """Cancel a job: queued ones at once, running ones after the current tile.
    Returns the job's status (``cancel_requested`` is true until it stops)."""
    return _job(jobs.cancel(job_id), job_id).to_dict()


@router.get(
    "/jobs/{job_id}/result",
    responses={
        200: {
            "model": TrainResult | ReasonerTrainResult,
            "description": "Segmentation: a GeoJSON FeatureCollection with a 'crs' "
            "member. Training: the trained model (TrainResult, or ReasonerTrainResult "
            "for kind reasoner) as JSON.",
            "content": {"application/geo+json": {}},
        },
        404: {"model": ErrorResponse},
        409: {"model": ErrorResponse, "description": "Not succeeded (yet)"},
        410: {"model": ErrorResponse, "description": "Result deleted (disk limit)"},
    },
)
def job_result(job_id: str, jobs: Jobs) -> Response:
    """The result of a succeeded job: polygons as a GeoJSON FeatureCollection, or for
    a training job the trained model (name, classes, scores, checkpoint)."""
    job = _job(jobs.get(job_id), job_id)
    info = job.to_dict()
    status = info["status"]
    if status == JobStatus.succeeded.value:
        if job.kind == "train":
            return JSONResponse(job.result, media_type="application/json")
        stored = jobs.open_result(job)
        if stored is None:
            limit = jobs.limits.result_store_bytes / 1024**3
            raise ApiError(
                410,
                f"The result of job {job_id} was deleted to keep results under "
                f"{limit:.3g} GiB of disk.",
                "Fetch results soon after their jobs finish, or submit the job again.",
            )
        return StreamingResponse(
            _chunks(stored),
            media_type="application/geo+json",
            headers={"Content-Length": str(os.fstat(stored.fileno()).st_size)},
        )
    if status == JobStatus.failed.value:
        error = info["error"] or {}
        raise ApiError(
            409,
            f"Job {job_id} failed, so it has no result: {error.get('detail')}",
            error.get("hint"),
            status=status,
        )
    if status == JobStatus.cancelled.value:
        raise ApiError(409, f"Job {job_id} was cancelled; it has no result.", None, status=status)
    raise ApiError(
        409,
        f"Job {job_id} is {status}; its result is not ready yet.",
        f"Poll GET /jobs/{job_id} until its status is 'succeeded'.",
        status=status,
    )


def raster_path(uploads: UploadStore, raster: str | None, upload_id: str | None) -> str:
    """The file a request names: its ``raster`` path, or the file of its ``upload_id``."""
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


def _chunks(fh: BinaryIO) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _job(job: Job | None, job_id: str) -> Job:
    if job is None:
        raise unknown_job(job_id)
    return job
