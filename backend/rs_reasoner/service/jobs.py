"""Job queue of the service: one worker thread runs jobs one after another.

GPU work is serial, so a single worker thread takes jobs from a ``queue.Queue``; the HTTP
side only submits, polls and cancels, and never waits for a job. A job is a segmentation
(``kind`` ``"segment"``: the pipeline, a GeoJSON result kept on disk by a
:class:`~rs_reasoner.service.results.ResultStore`) or a training run (``"train"``:
:class:`~rs_reasoner.service.training.Trainer`, a JSON summary of the trained model).
Requests are validated at submission (:meth:`JobManager.submit`,
:meth:`JobManager.submit_training`, their ``_async`` twins for the event loop) so bad
ones are refused at once; the checks that open files run apart (child processes for the
real pipeline), with a timeout (:mod:`.checks`). The job itself is :mod:`.job`.

:class:`~rs_reasoner.service.limits.JobLimits` bounds the rest: the queue's length (429
beyond it), each job's run time (stopped like a cancel, then abandoned to a fresh worker
if it does not stop), idle models (freed), and the results' disk space.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from rs_reasoner.errors import JobCancelled, RsReasonerError
from rs_reasoner.schemas import AnyTrainRequest, SegmentRequest
from rs_reasoner.service.checks import BoundedChecks, check_segment_request, check_train_request
from rs_reasoner.service.job import Job, JobStatus
from rs_reasoner.service.limits import JobLimits
from rs_reasoner.service.results import ResultStore

log = logging.getLogger(__name__)


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

    def validate(self, request: AnyTrainRequest, raster_path: str) -> None: ...

    def run(
        self,
        request: AnyTrainRequest,
        raster_path: str,
        progress: Callable[[str, float, str | None], None] | None = None,
        cancel: threading.Event | None = None,
        note: Callable[[str], None] | None = None,
    ) -> dict[str, Any]: ...


class JobManager:
    """Queue of segmentation and training jobs run one at a time by one worker thread.

    Args:
        pipeline: The pipeline (``validate`` and ``run``); shared, so models stay loaded.
        max_finished: Finished jobs kept in memory (oldest dropped first, with their
            results).
        to_geojson: Converts the result's GeoDataFrame to a GeoJSON dict; default
            :func:`rs_reasoner.vector.writers.to_geojson_dict`.
        trainer: Runs training jobs; default a
            :class:`~rs_reasoner.service.training.Trainer` on the pipeline's device that
            unloads the pipeline's models before training.
        train_options: Extra options for every training job of the default trainer.
        limits: Time limits, queue bound, check timeout, model idle time, result disk
            space (default :class:`~rs_reasoner.service.limits.JobLimits`).
        result_dir: Folder of segmentation results; None: a temporary one, removed at
            shutdown.
        isolate_checks: Run the submission checks that open files in child processes
            (:mod:`.checks`), as a fresh :class:`~rs_reasoner.pipeline.SegmentationPipeline`
            and the training checks; False: ``pipeline.validate`` and ``trainer.validate``
            in threads (test doubles, embedding).
    """

    def __init__(
        self,
        pipeline: PipelineLike,
        max_finished: int = 100,
        *,
        to_geojson: Callable[[Any], dict[str, Any]] | None = None,
        trainer: TrainerLike | None = None,
        train_options: Mapping[str, Any] | None = None,
        limits: JobLimits | None = None,
        result_dir: Path | None = None,
        isolate_checks: bool = False,
    ) -> None:
        self._pipeline = pipeline
        self._max_finished = max(0, max_finished)
        self._to_geojson = to_geojson
        self._trainer = trainer
        self._train_options = train_options
        self.limits = limits or JobLimits()
        self.results = ResultStore(result_dir, self.limits.result_store_bytes)
        self._checks = BoundedChecks(
            self.limits.check_timeout_s, self.limits.max_pending_checks, isolate=isolate_checks
        )
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._current: Job | None = None
        self._closed = False
        # A worker abandoned past a job's time limit exits when it sees a newer generation.
        self._generation = 0
        self._abandoned = 0
        self._worker = self._start_worker()

    # -- public API ------------------------------------------------------------------------

    def submit(self, request: SegmentRequest, raster_path: str) -> Job:
        """Validate a request and queue it (blocks up to ``limits.check_timeout_s``).

        Args:
            request: The request.
            raster_path: The raster to read (the request's path or an upload's file).

        Returns:
            The queued job.

        Raises:
            RsReasonerError: The request is invalid (from ``pipeline.validate``), its
                checks timed out, the queue is full (429) or the service is shutting
                down.
        """
        self._check_room()
        self._checks.run(self._segment_check(request, raster_path), raster_path)
        return self._queue_segmentation(request, raster_path)

    async def submit_async(self, request: SegmentRequest, raster_path: str) -> Job:
        """:meth:`submit` for the event loop: waits for the checks without a thread."""
        self._check_room()
        await self._checks.run_async(self._segment_check(request, raster_path), raster_path)
        return self._queue_segmentation(request, raster_path)

    def _segment_check(self, request: SegmentRequest, raster_path: str) -> Any:
        if self._checks.isolate:
            return (check_segment_request, (request, raster_path))
        return (self._pipeline.validate, (request, raster_path))

    def _train_check(self, request: AnyTrainRequest, raster_path: str) -> Any:
        if self._checks.isolate:
            return (check_train_request, (request, raster_path))
        return (self.trainer.validate, (request, raster_path))

    def _queue_segmentation(self, request: SegmentRequest, raster_path: str) -> Job:
        job = Job(
            id=uuid.uuid4().hex,
            request=request,
            raster_path=raster_path,
            time_limit_s=self.limits.segment_time_limit_s,
        )
        job.model = request.model
        job.messages.append(f"queued: {request.query!r}")
        self._enqueue(job)
        log.info("job %s queued (model %s)", job.id, request.model or "default")
        return job

    def submit_training(self, request: AnyTrainRequest, raster_path: str) -> Job:
        """Validate a training request (cheap checks, up to the check timeout) and queue it.

        Args:
            request: The request.
            raster_path: The raster to train on (the request's path or an upload's file).

        Returns:
            The queued job (``kind`` ``"train"``).

        Raises:
            RsReasonerError: The request is invalid, its checks timed out, the queue is
                full or the service is shutting down.
        """
        self._check_room()
        self._checks.run(self._train_check(request, raster_path), raster_path)
        return self._queue_training(request, raster_path)

    async def submit_training_async(self, request: AnyTrainRequest, raster_path: str) -> Job:
        """:meth:`submit_training` for the event loop."""
        self._check_room()
        await self._checks.run_async(self._train_check(request, raster_path), raster_path)
        return self._queue_training(request, raster_path)

    def _queue_training(self, request: AnyTrainRequest, raster_path: str) -> Job:
        job = Job(
            id=uuid.uuid4().hex,
            request=request,
            raster_path=raster_path,
            kind="train",
            time_limit_s=self.limits.train_time_limit_s,
        )
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

    def _check_room(self) -> None:
        """Refuse before any check when shutting down or the queue is full."""
        with self._lock:
            if self._closed:
                raise _ShuttingDown()
            queued = sum(1 for j in self._jobs.values() if j.status is JobStatus.queued)
        if queued >= self.limits.max_queued:
            raise QueueFull(self.limits.max_queued)

    def _enqueue(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise _ShuttingDown()
            queued = sum(1 for j in self._jobs.values() if j.status is JobStatus.queued)
            if queued >= self.limits.max_queued:
                raise QueueFull(self.limits.max_queued)
            self._jobs[job.id] = job
            self._queue.put(job)

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._lock:
            return self._jobs.get(job_id)

    def open_result(self, job: Job) -> BinaryIO | None:
        """A succeeded segmentation job's GeoJSON, opened for streaming (the caller closes
        it); None when it was removed to respect ``limits.result_store_bytes``."""
        return self.results.open(job.id)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a job.

        A queued job is cancelled at once; a running job gets its cancel flag set and
        becomes ``cancelled`` when the pipeline stops (between tiles, or between the row
        bands of a large tile's read). Finished jobs are left as they are.

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
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.status is JobStatus.queued)

    def current(self) -> Job | None:
        """The running job, if any."""
        with self._lock:
            return self._current

    def abandoned_workers(self) -> int:
        """Workers left behind in a job that did not stop after its time limit."""
        with self._lock:
            return self._abandoned

    def active_raster_paths(self) -> set[str]:
        """Rasters of queued and running jobs (files that must not be deleted)."""
        return {j.raster_path for j in self.jobs() if not j.status.finished}

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel queued and running jobs, stop the worker and delete the results.

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
        self._checks.close()
        self.results.close()

    # -- worker ----------------------------------------------------------------------------

    def _start_worker(self) -> threading.Thread:
        with self._lock:
            self._generation += 1
            generation = self._generation
        worker = threading.Thread(
            target=self._work, args=(generation,), name="rs-reasoner-jobs", daemon=True
        )
        worker.start()
        return worker

    def _work(self, generation: int) -> None:
        idle_s = self.limits.model_idle_s
        unloaded = False
        while True:
            try:
                # Wake up once after idle_s without a job to free the loaded models.
                job = self._queue.get(timeout=None if unloaded or idle_s is None else idle_s)
            except queue.Empty:
                self._unload_idle_models()
                unloaded = True
                continue
            unloaded = False
            if job is None:
                return
            try:
                self._run(job)
            except BaseException:  # noqa: BLE001 - the worker must survive anything
                log.exception("job worker: unexpected error around job %s", job.id)
            finally:
                with self._lock:
                    if self._current is job:
                        self._current = None
                    stale = generation != self._generation
                self._evict()
            if stale:
                log.warning("abandoned job worker finished job %s late; it exits", job.id)
                return

    def _unload_idle_models(self) -> None:
        unload = getattr(self._pipeline, "unload", None)
        if unload is None or not self._pipeline.loaded_models():
            return
        log.info("no job for %.0f s: freeing the loaded models", self.limits.model_idle_s)
        try:
            unload()
        except Exception:  # noqa: BLE001 - freeing memory must not stop the worker
            log.exception("freeing idle models failed")

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
        timers = self._arm_time_limit(job)
        try:
            if job.kind == "train":
                self._run_training(job)
            else:
                self._run_segmentation(job)
        finally:
            for timer in timers:
                timer.cancel()

    def _arm_time_limit(self, job: Job) -> list[threading.Timer]:
        """Timers that stop the job at its limit and abandon it a grace period later."""
        if job.time_limit_s is None:
            return []
        stop = threading.Timer(job.time_limit_s, self._stop_overdue, args=(job,))
        abandon = threading.Timer(
            job.time_limit_s + self.limits.stop_grace_s, self._abandon_overdue, args=(job,)
        )
        for timer in (stop, abandon):
            timer.daemon = True
            timer.start()
        return [stop, abandon]

    def _stop_overdue(self, job: Job) -> None:
        with job._lock:
            if job.status is not JobStatus.running:
                return
            job.timed_out = True
            job.cancel_event.set()
            job.messages.append(f"time limit of {job.time_limit_s:g} s reached; stopping")
            job._last_stage_message = None
        log.warning("job %s reached its time limit of %s s", job.id, job.time_limit_s)

    def _abandon_overdue(self, job: Job) -> None:
        with self._lock:
            if self._current is not job or self._closed:
                return
        if not job._finish(JobStatus.failed, job._time_limit_error(stopped=False)):
            return
        log.error(
            "job %s did not stop within %.0f s of its time limit; a new worker takes the "
            "queue (the old one exits when its call returns)",
            job.id,
            self.limits.stop_grace_s,
        )
        with self._lock:
            self._current = None
            self._abandoned += 1
        self._worker = self._start_worker()
        self._evict()

    def _run_segmentation(self, job: Job) -> None:
        def segment() -> tuple[Any, int]:
            result = self._pipeline.run(
                job.request, job.raster_path, progress=job._progress, cancel=job.cancel_event
            )
            if job.cancel_event.is_set():
                raise JobCancelled()
            geojson = self._geojson(result.polygons)
            features = geojson.get("features") if isinstance(geojson, dict) else None
            self.results.write(job.id, geojson)
            return result, len(features) if isinstance(features, list) else None

        ok, value = self._attempt(job, segment, "cancelled")
        if ok:
            result, feature_count = value
            with job._lock:
                if job.status.finished:  # abandoned past its time limit meanwhile
                    self.results.remove(job.id)
                    return
                job.feature_count = feature_count
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
                if job.status.finished:
                    return
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
            if job.timed_out:
                error = job._time_limit_error()
                if job._finish(JobStatus.failed, error):
                    job._note(f"failed: {error['detail']}")
                log.info("job %s stopped at its time limit", job.id)
            else:
                if job._finish(JobStatus.cancelled):
                    job._note(cancelled_note)
                log.info("job %s cancelled", job.id)
        except RsReasonerError as exc:
            if job._finish(JobStatus.failed, {"detail": exc.message, "hint": exc.hint}):
                job._note(f"failed: {exc.message}")
            log.info("job %s failed: %s", job.id, exc)
        except Exception as exc:  # noqa: BLE001 - a bug in one job must not stop the worker
            log.exception("job %s crashed", job.id)
            detail, hint = _describe_crash(exc)
            if job._finish(JobStatus.failed, {"detail": detail, "hint": hint}):
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
            dropped = finished[:excess]
            for job in dropped:
                del self._jobs[job.id]
        for job in dropped:
            self.results.remove(job.id)


class QueueFull(RsReasonerError):
    """The queue holds ``limits.max_queued`` jobs already."""

    status_code = 429

    def __init__(self, max_queued: int) -> None:
        super().__init__(
            f"The job queue is full: {max_queued} jobs are waiting to run.",
            "Wait for some to finish, or cancel ones you no longer need "
            "(DELETE /jobs/{id}), then submit again.",
        )


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
