"""One job of the service's queue: its request, status, progress and messages.

A :class:`Job` is read through :meth:`Job.to_dict` (a consistent snapshot under its
lock) and updated by the :class:`~rs_reasoner.service.jobs.JobManager`'s worker through
its underscored methods.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from rs_reasoner.schemas import AnyTrainRequest, SegmentRequest

#: Messages kept per job (older ones are dropped).
MAX_MESSAGES = 200

#: Stages reported by the pipeline → (start, end) of the job's overall progress.
_STAGE_SPAN = {
    "loading model": (0.0, 0.05),
    "reading": (0.05, 0.95),
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


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat()


@dataclass(eq=False)
class Job:
    """One job. Read it through :meth:`to_dict` (a consistent snapshot).

    Attributes:
        id: uuid4 hex.
        request: The request (``SegmentRequest``, or a training request).
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
        result: When a training job succeeded: the summary of the trained model.
            (Segmentation results live on disk: :meth:`JobManager.open_result`.)
        feature_count: Number of features of a segmentation result.
        time_limit_s: The run time allowed (None: unlimited).
        timed_out: It was stopped for running past ``time_limit_s``.
    """

    id: str
    request: SegmentRequest | AnyTrainRequest
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
    time_limit_s: float | None = None
    timed_out: bool = False
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
                "query": self.request.query if self.kind == "segment" else "",
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

    def _finish(self, status: JobStatus, error: dict[str, str | None] | None = None) -> bool:
        with self._lock:
            return self._finish_locked(status, error)

    def _finish_locked(self, status: JobStatus, error: dict[str, str | None] | None = None) -> bool:
        """Settle the job; False (and no change) when it was settled already (a worker
        that was abandoned past the time limit and returned later)."""
        if self.status.finished:
            return False
        self.status = status
        self.stage = status.value
        self.error = error
        self.finished = time.time()
        if status is JobStatus.succeeded:
            self.progress = 1.0
        return True

    def _time_limit_error(self, stopped: bool = True) -> dict[str, str | None]:
        how = "was stopped" if stopped else (
            "did not stop; the backend left it behind and went on with the queue"
        )
        if self.kind == "train":
            hint = (
                "Its checkpoints are kept: submit the same name again to resume, or start "
                "the backend with a longer --train-time-limit."
            )
        else:
            hint = (
                "Choose a coarser resolution, a smaller extent or a faster model, or start "
                "the backend with a longer --job-time-limit."
            )
        return {
            "detail": f"The job ran longer than its time limit of {self.time_limit_s:g} s "
            f"and {how}.",
            "hint": hint,
        }
