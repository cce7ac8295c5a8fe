"""The service's limits in one place: how long a job may run, how many may wait, how long
a submission's file checks may take, when idle models are freed, how much disk results
may use. docs/reliability.md explains each policy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobLimits:
    """Limits of a :class:`~rs_reasoner.service.jobs.JobManager`.

    Attributes:
        segment_time_limit_s: Longest a segmentation job may run (None: no limit). The
            job is then stopped like a cancel (between tiles and between the row bands of
            a tile's read) and fails with a message naming the limit.
        train_time_limit_s: The same for training jobs (their checkpoints are kept, so
            the same name resumes).
        stop_grace_s: How long a job past its limit may take to stop (one model call
            that cannot be interrupted, a read stuck in the kernel); after that the job
            is failed and a fresh worker takes the queue, leaving the stuck one behind.
        max_queued: Jobs that may wait; one more is refused with HTTP 429.
        check_timeout_s: Longest the file checks of one submission (opening the raster)
            may take before it is refused; they run in their own thread, so a file that
            never opens (a FIFO, a dead network share) cannot block the HTTP side.
        max_pending_checks: Submissions whose checks may run at once (stuck ones
            included); one more is refused with HTTP 429.
        model_idle_s: Loaded models are freed after the queue has been empty this long
            (None: kept until shutdown).
        result_store_bytes: Disk space segmentation results may use; the oldest results
            are deleted beyond it (their jobs then answer 410 Gone).
    """

    segment_time_limit_s: float | None = 3600.0
    train_time_limit_s: float | None = 24 * 3600.0
    stop_grace_s: float = 60.0
    max_queued: int = 64
    check_timeout_s: float = 20.0
    max_pending_checks: int = 8
    model_idle_s: float | None = 900.0
    result_store_bytes: int = 2 * 1024**3

    def __post_init__(self) -> None:
        for name in ("segment_time_limit_s", "train_time_limit_s", "model_idle_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, not {value}")
        if not (self.stop_grace_s >= 0 and self.check_timeout_s > 0):
            raise ValueError("stop_grace_s must be >= 0 and check_timeout_s > 0")
        if self.max_queued < 1 or self.max_pending_checks < 1:
            raise ValueError("max_queued and max_pending_checks must be >= 1")
        if self.result_store_bytes < 0:
            raise ValueError("result_store_bytes must be >= 0")
