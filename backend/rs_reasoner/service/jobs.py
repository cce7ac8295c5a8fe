"""Job queue of the service: one worker thread runs jobs one after another.

GPU work is serial, so a single worker thread takes jobs from a ``queue.Queue``; the HTTP
side only submits, polls and cancels, and never waits for a job. A job is a segmentation
(``kind`` ``"segment"``: the pipeline, a GeoJSON result) or a training run (``"train"``:
:class:`~rs_reasoner.service.training.Trainer`, a JSON summary of the trained model).
Requests are validated synchronously in :meth:`JobManager.submit` /
:meth:`JobManager.submit_training` (cheap checks) so bad ones are refused at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Protocol

from rs_reasoner.errors import JobCancelled, RsReasonerError
from rs_reasoner.schemas import SegmentRequest, TrainRequest

log = logging.getLogger(__name__)

#: Messages kept per job (older ones are dropped).
MAX_MESSAGES = 200

#: Stages reported by the pipeline → (start, end) of the job's overall progress.
_STAGE_SPAN = {
    "loading model": (0.0, 0.05),
    "segmenting": (0.05, 0.95),
    "vectorising": (0.95, 1.0),
    "done": (1.0, 1.0),
}


class JobStatus(str, Enum):
    """Life cycle of a job: queued → running → succeeded / failed / cancelled."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class PipelineLike(Protocol):
    """What the service needs from :class:`rs_reasoner.pipeline.SegmentationPipeline`."""

    @property
    def device(self) -> str: ...

    def loaded_models(self) -> list[str]: ...

    def validate(self, request: SegmentRequest, raster_path: str) -> None: ...

    def run(
        self,
        request: SegmentRequest,
        raster_path: str,
        progress: Callable[[str, float, str | None], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Any: ...


class TrainerLike(Protocol):
    """What the service needs to run training jobs (see ``service/training.py``)."""

    def validate(self, request: TrainRequest, raster_path: str) -> None: ...

    def run(
        self,
        request: TrainRequest,
        raster_path: str,
        progress: Callable[[str, float, str | None], None] | None = None,
        cancel: threading.Event | None = None,
        note: Callable[[str], None] | None = None,
    ) -> dict[str, Any]: ...


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat()


@dataclass(eq=False)
class Job:
    """One job. Read it through :meth:`to_dict` (a consistent snapshot).

    Attributes:
        id: uuid4 hex.
        request: The request (``SegmentRequest``, or ``TrainRequest`` for training).
        raster_path: The raster read (the request's path or an upload's file).
        kind: ``"segment"`` or ``"train"``.
        status: Where the job is in its life cycle.
        stage: The pipeline stage last reported ("queued", "segmenting", ...).
        progress: Overall progress 0..1.
        messages: Log lines (the last :data:`MAX_MESSAGES`).
        error: ``{"detail", "hint"}`` when failed.
        created, started, finished: Unix timestamps.
        model: The requested model, then the one that ran (training: the new model).
        mode: The mode it ran in (``auto`` resolved), once known.
        reasoning: The model's reasoning text, if any.
        result: When succeeded: a GeoJSON FeatureCollection (dict), or for training the
            summary of the trained model.
        feature_count: Number of features in ``result``.
    """

    id: str
    request: SegmentRequest | TrainRequest
    raster_path: str
    kind: str = "segment"
    status: JobStatus = JobStatus.queued
    stage: str = "queued"
    progress: float = 0.0
    messages: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_MESSAGES))
    error: dict[str, str | None] | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    model: str | None = None
    mode: str | None = None
    reasoning: str | None = None
    result: dict[str, Any] | None = None
    feature_count: int | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _last_stage_message: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the job, without the result."""
        with self._lock:
            return {
                "id": self.id,
                "kind": self.kind,
                "status": self.status.value,
                "stage": self.stage,
                "progress": round(self.progress, 4),
                "messages": list(self.messages),
                "error": dict(self.error) if self.error else None,
                "created": _iso(self.created),
                "started": _iso(self.started),
                "finished": _iso(self.finished),
                "model": self.model,
                "mode": self.mode,
                "query": getattr(self.request, "query", ""),
                "reasoning": self.reasoning,
                "feature_count": self.feature_count,
                "cancel_requested": self.cancel_event.is_set(),
            }

    # -- updates (called with no lock held) ----------------------------------------------

    def _progress(self, stage: str, fraction: float, message: str | None) -> None:
        try:
            fraction = min(max(float(fraction), 0.0), 1.0)
        except (TypeError, ValueError):
            fraction = 0.0
        lo, hi = _STAGE_SPAN.get(stage, (0.0, 1.0))
        with self._lock:
            if self.status is not JobStatus.running:
                return
            self.stage = stage
            self.progress = max(self.progress, lo + (hi - lo) * fraction)
            if message:
                line = f"{stage}: {message}"
                # One line per stage: "segmenting: tile 7/40" replaces "tile 6/40".
                if self._last_stage_message == stage and self.messages:
                    self.messages[-1] = line
                else:
                    self.messages.append(line)
                self._last_stage_message = stage

    def _note(self, message: str) -> None:
        with self._lock:
            self.messages.append(message)
            self._last_stage_message = None

    def _finish(self, status: JobStatus, error: dict[str, str | None] | None = None) -> None:
        with self._lock:
            self._finish_locked(status, error)

    def _finish_locked(self, status: JobStatus, error: dict[str, str | None] | None = None) -> None:
        self.status = status
        self.stage = status.value
        self.error = error
        self.finished = time.time()
        if status is JobStatus.succeeded:
            self.progress = 1.0


class JobManager:
    """Queue of segmentation and training jobs run one at a time by one worker thread.

    Args:
        pipeline: The pipeline (``validate`` and ``run``); shared, so models stay loaded.
        max_finished: Finished jobs kept in memory (oldest dropped first).
        to_geojson: Converts the result's GeoDataFrame to a GeoJSON dict; default
            :func:`rs_reasoner.vector.writers.to_geojson_dict`.
        trainer: Runs training jobs; default a
            :class:`~rs_reasoner.service.training.Trainer` on the pipeline's device that
            unloads the pipeline's models before training.
        train_options: Extra options for every training job of the default trainer.
    """

    def __init__(
        self,
        pipeline: PipelineLike,
        max_finished: int = 100,
        *,
        to_geojson: Callable[[Any], dict[str, Any]] | None = None,
        trainer: TrainerLike | None = None,
        train_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._max_finished = max(0, max_finished)
        self._to_geojson = to_geojson
        self._trainer = trainer
        self._train_options = train_options
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._current: Job | None = None
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="rs-reasoner-jobs", daemon=True)
        self._worker.start()

    # -- public API ------------------------------------------------------------------------

    def submit(self, request: SegmentRequest, raster_path: str) -> Job:
        """Validate a request (synchronously) and queue it.

        Args:
            request: The request.
            raster_path: The raster to read (the request's path or an upload's file).

        Returns:
            The queued job.

        Raises:
            RsReasonerError: The request is invalid (from ``pipeline.validate``) or the
                service is shutting down.
        """
        if self._closed:
            raise _ShuttingDown()
        self._pipeline.validate(request, raster_path)
        job = Job(id=uuid.uuid4().hex, request=request, raster_path=raster_path)
        job.model = request.model
        job.messages.append(f"queued: {request.query!r}")
        self._enqueue(job)
        log.info("job %s queued (model %s)", job.id, request.model or "default")
        return job

    def submit_training(self, request: TrainRequest, raster_path: str) -> Job:
        """Validate a training request (synchronously, cheap checks) and queue it.

        Args:
            request: The request.
            raster_path: The raster to train on (the request's path or an upload's file).

        Returns:
            The queued job (``kind`` ``"train"``).

        Raises:
            RsReasonerError: The request is invalid or the service is shutting down.
        """
        if self._closed:
            raise _ShuttingDown()
        self.trainer.validate(request, raster_path)
        job = Job(id=uuid.uuid4().hex, request=request, raster_path=raster_path, kind="train")
        job.model = request.name
        job.messages.append(f"queued: train model '{request.name}'")
        self._enqueue(job)
        log.info("job %s queued (train %s)", job.id, request.name)
        return job

    @property
    def trainer(self) -> TrainerLike:
        """The trainer of training jobs (created on first use)."""
        if self._trainer is None:
            from rs_reasoner.service.training import Trainer

            pipeline = self._pipeline
            self._trainer = Trainer(
                device=lambda: pipeline.device,
                options=self._train_options,
                before_run=getattr(pipeline, "unload", None),
            )
        return self._trainer

    def _enqueue(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise _ShuttingDown()
            self._jobs[job.id] = job
            self._queue.put(job)

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a job.

        A queued job is cancelled at once; a running job gets its cancel flag set and
        becomes ``cancelled`` when the pipeline stops (between tiles). Finished jobs are
        left as they are.

        Returns:
            The job, or None when the id is unknown.
        """
        job = self.get(job_id)
        if job is None:
            return None
        with job._lock:
            if job.status.finished:
                return job
            job.cancel_event.set()
            queued = job.status is JobStatus.queued
            if queued:
                job._finish_locked(JobStatus.cancelled)
            job.messages.append("cancelled before it started" if queued else "cancel requested")
            job._last_stage_message = None
        if queued:
            log.info("job %s cancelled while queued", job.id)
            self._evict()
        return job

    def jobs(self) -> list[Job]:
        """All jobs in memory, oldest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created)

    def queue_length(self) -> int:
        """Number of jobs waiting to run."""
        return sum(1 for j in self.jobs() if j.status is JobStatus.queued)

    def current(self) -> Job | None:
        """The running job, if any."""
        with self._lock:
            return self._current

    def active_raster_paths(self) -> set[str]:
        """Rasters of queued and running jobs (files that must not be deleted)."""
        return {j.raster_path for j in self.jobs() if not j.status.finished}

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel queued and running jobs and stop the worker.

        Args:
            timeout: Seconds to wait for the running job to stop.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._jobs.values())
        for job in pending:
            self.cancel(job.id)
        self._queue.put(None)
        self._worker.join(timeout)
        if self._worker.is_alive():
            log.warning("job worker still busy after %.0f s; exiting anyway", timeout)

    # -- worker ----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._run(job)
            except BaseException:  # noqa: BLE001 - the worker must survive anything
                log.exception("job worker: unexpected error around job %s", job.id)
            finally:
                with self._lock:
                    self._current = None
                self._evict()

    def _run(self, job: Job) -> None:
        with job._lock:
            if job.status is not JobStatus.queued:
                return  # cancelled while waiting
            job.status = JobStatus.running
            job.stage = "starting"
            job.started = time.time()
        with self._lock:
            self._current = job
        log.info("job %s running", job.id)
        if job.kind == "train":
            self._run_training(job)
        else:
            self._run_segmentation(job)

    def _run_segmentation(self, job: Job) -> None:
        def segment() -> tuple[Any, dict[str, Any]]:
            result = self._pipeline.run(
                job.request, job.raster_path, progress=job._progress, cancel=job.cancel_event
            )
            if job.cancel_event.is_set():
                raise JobCancelled()
            return result, self._geojson(result.polygons)

        ok, value = self._attempt(job, segment, "cancelled")
        if ok:
            result, geojson = value
            features = geojson.get("features") if isinstance(geojson, dict) else None
            with job._lock:
                job.result = geojson
                job.feature_count = len(features) if isinstance(features, list) else None
                job.model = getattr(result, "model", job.model)
                mode = getattr(result, "mode", None)
                job.mode = getattr(mode, "value", mode)
                job.reasoning = getattr(result, "reasoning", None)
                job.messages.extend(getattr(result, "messages", None) or [])
                job._finish_locked(JobStatus.succeeded)
            log.info(
                "job %s succeeded in %.1f s (%s features)",
                job.id,
                (job.finished or 0.0) - (job.started or 0.0),
                job.feature_count,
            )

    def _run_training(self, job: Job) -> None:
        def train() -> Any:
            return self.trainer.run(
                job.request,
                job.raster_path,
                progress=job._progress,
                cancel=job.cancel_event,
                note=job._note,
            )

        ok, summary = self._attempt(
            job, train, "cancelled; checkpoints are kept: submit the same name again to resume"
        )
        if ok:
            with job._lock:
                job.result = summary
                job._finish_locked(JobStatus.succeeded)
            log.info(
                "job %s trained '%s' in %.1f s",
                job.id,
                job.model,
                (job.finished or 0.0) - (job.started or 0.0),
            )

    @staticmethod
    def _attempt(job: Job, work: Callable[[], Any], cancelled_note: str) -> tuple[bool, Any]:
        """Run a job's work; settle it as cancelled or failed when that raises.

        Returns:
            ``(True, value)`` when the work returned, else ``(False, None)``.
        """
        try:
            return True, work()
        except JobCancelled:
            job._finish(JobStatus.cancelled)
            job._note(cancelled_note)
            log.info("job %s cancelled", job.id)
        except RsReasonerError as exc:
            job._finish(JobStatus.failed, {"detail": exc.message, "hint": exc.hint})
            job._note(f"failed: {exc.message}")
            log.info("job %s failed: %s", job.id, exc)
        except Exception as exc:  # noqa: BLE001 - a bug in one job must not stop the worker
            log.exception("job %s crashed", job.id)
            detail, hint = _describe_crash(exc)
            job._finish(JobStatus.failed, {"detail": detail, "hint": hint})
            job._note(f"failed: {detail}")
        return False, None

    def _geojson(self, polygons: Any) -> dict[str, Any]:
        convert = self._to_geojson
        if convert is None:
            from rs_reasoner.vector.writers import to_geojson_dict

            convert = to_geojson_dict
        return convert(polygons)

    def _evict(self) -> None:
        with self._lock:
            finished = [j for j in self._jobs.values() if j.status.finished]
            excess = len(finished) - self._max_finished
            if excess <= 0:
                return
            finished.sort(key=lambda j: j.finished or j.created)
            for job in finished[:excess]:
                del self._jobs[job.id]


class _ShuttingDown(RsReasonerError):
    status_code = 503

    def __init__(self) -> None:
        super().__init__("The backend is shutting down.", "Start it again and resubmit.")


def _describe_crash(exc: Exception) -> tuple[str, str]:
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if name == "OutOfMemoryError" or "out of memory" in text.lower():
        return (
            f"The model ran out of memory ({name}).",
            "Choose a smaller tile size, a coarser resolution or a smaller extent, "
            "or run the backend with --device cpu.",
        )
    detail = f"Internal error while running the job: {name}" + (f": {text}" if text else "")
    return detail[:500], "This is a bug in RS Reasoner; the backend log has the details."
