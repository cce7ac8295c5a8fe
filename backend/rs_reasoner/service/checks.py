"""Submission checks that touch files, run where they cannot block the server.

Opening a raster can block for good: a FIFO waits for a writer, a dead network share
never answers, a VRT may name either. So each check runs in a thread of its own, the
caller waits at most a timeout (the HTTP side awaits it without holding a worker
thread), and a bounded number may be pending at once: stuck ones stay stuck, but they
can neither hang a request nor exhaust the threads that answer ``/health``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from rs_reasoner.errors import RsReasonerError

T = TypeVar("T")


class CheckTimedOut(RsReasonerError):
    """A submission's file checks did not finish in time."""

    status_code = 422


class ChecksBusy(RsReasonerError):
    """Too many submissions are being checked at once."""

    status_code = 429


class BoundedChecks:
    """Runs checks in daemon threads: at most ``max_pending`` at once, waited on for at
    most ``timeout_s``.

    Args:
        timeout_s: Seconds a caller waits for one check.
        max_pending: Checks that may run at once (including stuck ones).
    """

    def __init__(self, timeout_s: float, max_pending: int) -> None:
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self._slots = threading.BoundedSemaphore(max_pending)

    def start(self, check: Callable[[], T]) -> Future[T]:
        """Start a check in its own thread.

        Raises:
            ChecksBusy: ``max_pending`` checks are still running.
        """
        if not self._slots.acquire(blocking=False):
            raise ChecksBusy(
                f"{self.max_pending} submitted rasters are still being checked (files that "
                "do not open, such as a FIFO or an unreachable network share, keep their "
                "check busy).",
                "Submit again later; give rasters on a local disk.",
            )
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()

        def run() -> None:
            try:
                future.set_result(check())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)
            finally:
                self._slots.release()

        threading.Thread(target=run, name="rs-reasoner-check", daemon=True).start()
        return future

    def run(self, check: Callable[[], T], subject: str) -> T:
        """Run a check and wait for it (blocking the calling thread up to the timeout).

        Args:
            check: The check; its exceptions are raised here.
            subject: What is checked, for the timeout message (e.g. the raster path).

        Raises:
            CheckTimedOut: It did not finish within ``timeout_s``.
            ChecksBusy: See :meth:`start`.
        """
        future = self.start(check)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise self._timed_out(subject) from None

    async def run_async(self, check: Callable[[], T], subject: str) -> T:
        """:meth:`run` for the event loop: waits without holding a thread."""
        future = self.start(check)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except asyncio.TimeoutError:
            raise self._timed_out(subject) from None

    def _timed_out(self, subject: str) -> CheckTimedOut:
        return CheckTimedOut(
            f"Checking {subject} took longer than {self.timeout_s:g} s, so the job was not "
            "queued.",
            "The file may be a FIFO or device, sit on a network share that does not "
            "answer, or be a VRT naming such files; copy the raster to a local disk.",
        )
