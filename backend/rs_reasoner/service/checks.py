"""Submission checks that touch files, run where they cannot block the server.

Opening a raster can block for good: a FIFO waits for a writer, a dead network share
never answers, a VRT may name either. Worse, GDAL's metadata calls (a VRT's overviews,
band masks) open those sources *holding Python's GIL*, so a check stuck there in a
thread freezes every thread of the process, ``/health`` included. So the real checks
run in child processes: the caller waits at most ``timeout_s`` (the HTTP side awaits it
without holding a worker thread) and a check still running then is killed with its
process. At most ``max_pending`` run at once; more are refused (HTTP 429).

Checks of test doubles (``isolate=False``) run in threads instead: same timeout and
bound, without the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import Connection
from typing import Any

from rs_reasoner import errors
from rs_reasoner.errors import RsReasonerError

log = logging.getLogger(__name__)

#: A check: a module-level function (it crosses to a child process) and its arguments.
Check = tuple[Callable[..., None], tuple[Any, ...]]


class CheckTimedOut(RsReasonerError):
    """A submission's file checks did not finish in time."""

    status_code = 422


class ChecksBusy(RsReasonerError):
    """Too many submissions are being checked at once."""

    status_code = 429


def check_segment_request(request: Any, raster_path: str) -> None:
    """The checks of :meth:`rs_reasoner.pipeline.SegmentationPipeline.validate` (which
    loads no model), in whatever process calls it."""
    from rs_reasoner.pipeline import SegmentationPipeline

    SegmentationPipeline(device="cpu").validate(request, raster_path)


def check_train_request(request: Any, raster_path: str) -> None:
    """The checks of a training request (see :mod:`rs_reasoner.training_run`, and
    :mod:`rs_reasoner.reasoner_request` for ``kind: reasoner``)."""
    if request.kind == "reasoner":
        from rs_reasoner.reasoner_request import check_reasoner_request

        check_reasoner_request(request, raster_path if request.has_raster else None)
        return
    from rs_reasoner.training_run import check_train_request as check

    check(request, raster_path)


class BoundedChecks:
    """Runs checks with a timeout, at most ``max_pending`` at once.

    Args:
        timeout_s: Seconds a caller waits for one check.
        max_pending: Checks that may run at once.
        isolate: Run checks in child processes (killed on timeout); else in threads
            (a stuck one stays stuck, but holds only its slot).
    """

    def __init__(self, timeout_s: float, max_pending: int, isolate: bool = False) -> None:
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.isolate = isolate
        self._slots = threading.BoundedSemaphore(max_pending)
        self._lock = threading.Lock()
        self._idle: list[_CheckProcess] = []
        self._closed = False
        # Threads that wait for child processes: each wait ends by the timeout.
        self._waiters = ThreadPoolExecutor(max_pending, thread_name_prefix="rs-reasoner-wait")
        if isolate:  # a warm process for the first submission (start-up takes seconds)
            self._idle.append(_CheckProcess())

    def start(self, check: Check, subject: str) -> Future[None]:
        """Start a check; the future ends with its outcome or :class:`CheckTimedOut`.

        Raises:
            ChecksBusy: ``max_pending`` checks are still running.
        """
        if not self._slots.acquire(blocking=False):
            raise ChecksBusy(
                f"{self.max_pending} submitted rasters are still being checked (a file "
                "that does not open, such as a FIFO or an unreachable network share, keeps "
                f"its check busy for up to {self.timeout_s:g} s).",
                "Submit again in a moment; give rasters on a local disk.",
            )
        if self.isolate:
            try:
                return self._waiters.submit(self._in_process, check, subject)
            except RuntimeError:  # shut down
                self._slots.release()
                raise
        future: Future[None] = Future()
        future.set_running_or_notify_cancel()

        def run() -> None:
            try:
                future.set_result(check[0](*check[1]))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)
            finally:
                self._slots.release()

        threading.Thread(target=run, name="rs-reasoner-check", daemon=True).start()
        return future

    def run(self, check: Check, subject: str) -> None:
        """Run a check and wait for it (blocking the calling thread up to the timeout).

        Args:
            check: The check; its exceptions are raised here.
            subject: What is checked, for the timeout message (e.g. the raster path).

        Raises:
            CheckTimedOut: It did not finish within ``timeout_s``.
            ChecksBusy: See :meth:`start`.
        """
        future = self.start(check, subject)
        try:
            return future.result(timeout=self._wait_limit())
        except FutureTimeout:
            raise self._timed_out(subject) from None

    async def run_async(self, check: Check, subject: str) -> None:
        """:meth:`run` for the event loop: waits without holding a thread."""
        future = self.start(check, subject)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self._wait_limit())
        except asyncio.TimeoutError:
            raise self._timed_out(subject) from None

    def _wait_limit(self) -> float:
        # Isolated checks time out by themselves (killed); the margin covers a start-up.
        return self.timeout_s + _STARTUP_S + 5 if self.isolate else self.timeout_s

    def close(self) -> None:
        """Stop the idle child processes (running checks end by their timeout)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for proc in idle:
            proc.kill()
        self._waiters.shutdown(wait=False, cancel_futures=True)

    def _in_process(self, check: Check, subject: str) -> None:
        try:
            with self._lock:
                proc = self._idle.pop() if self._idle else None
            if proc is None:
                proc = _CheckProcess()
            outcome = proc.call(check, self.timeout_s)
            if outcome is None:
                proc.kill()
                log.warning("check of %s timed out; its process was killed", subject)
                raise self._timed_out(subject)
            with self._lock:
                keep = not self._closed and not self._idle
                if keep:
                    self._idle.append(proc)  # one warm process for the next check
            if not keep:
                proc.kill()
            _raise(outcome)
        finally:
            self._slots.release()

    def _timed_out(self, subject: str) -> CheckTimedOut:
        return CheckTimedOut(
            f"Checking {subject} took longer than {self.timeout_s:g} s, so the job was not "
            "queued.",
            "The file may be a FIFO or device, sit on a network share that does not "
            "answer, or be a VRT naming such files; copy the raster to a local disk.",
        )


# -- child processes -------------------------------------------------------------------------


class _CheckProcess:
    """A child process that runs checks sent over a pipe, one at a time."""

    def __init__(self) -> None:
        # spawn: forking a process with threads (the server's) can copy held locks.
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), name="rs-reasoner-check",
                                daemon=True)  # fmt: skip
        self.proc.start()
        child.close()
        self.ready = False

    def call(self, check: Check, timeout_s: float) -> tuple[str, Any] | None:
        """Send a check and wait for its outcome; None when ``timeout_s`` passed first
        (counted once the child is ready, so its start-up is not the check's)."""
        try:
            if not self.ready:
                if not self.conn.poll(_STARTUP_S):
                    return None
                self.conn.recv()  # "ready"
                self.ready = True
            self.conn.send(check)
            if not self.conn.poll(timeout_s):
                return None
            return self.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            return ("bug", f"the check process died ({type(exc).__name__})")

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
            self.proc.join(2)
        with contextlib.suppress(Exception):
            self.conn.close()


#: Longest a fresh child may take to import what checks need (about 1 s on a laptop).
_STARTUP_S = 30.0


def _serve(conn: Connection) -> None:
    """Child process: run each received check, send back its outcome."""
    with contextlib.suppress(ValueError, AttributeError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the server's to handle
    _die_with_parent()
    # What every check needs, loaded before the parent's timeout starts counting.
    import rasterio  # noqa: F401

    import rs_reasoner.pipeline  # noqa: F401
    from rs_reasoner.segmenters import registry

    with contextlib.suppress(Exception):  # a broken plugin is the check's to report
        registry.specs()
    conn.send("ready")
    while True:
        try:
            func, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            func(*args)
            outcome: tuple[str, Any] = ("ok", None)
        except RsReasonerError as exc:
            outcome = ("error", (type(exc).__name__, exc.status_code, exc.message, exc.hint))
        except Exception as exc:  # noqa: BLE001 - reported to the parent as a bug
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            outcome = ("bug", f"{type(exc).__name__}: {text}"[:500])
        try:
            conn.send(outcome)
        except (OSError, BrokenPipeError):
            return


def _die_with_parent() -> None:
    """Linux: have the kernel kill this child when the server dies (even by SIGKILL), so
    a check stuck on a FIFO does not outlive it. Elsewhere a stuck child ends with its
    check's timeout or the server's exit."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _raise(outcome: tuple[str, Any]) -> None:
    """Re-raise a child's outcome in the parent (no-op for success)."""
    kind, payload = outcome
    if kind == "ok":
        return
    if kind == "error":
        name, status, message, hint = payload
        cls = getattr(errors, name, None)
        if not (isinstance(cls, type) and issubclass(cls, RsReasonerError)):
            cls = RsReasonerError
        try:
            error = cls(message, hint)
        except TypeError:  # a subclass with another signature
            error = RsReasonerError(message, hint)
        error.status_code = status
        raise error
    raise RuntimeError(f"checking the request failed: {payload}")
