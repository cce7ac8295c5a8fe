"""Background work: everything that talks to the backend or waits runs in a QgsTask.

:class:`SegmentTask`: (start the backend) → (export + upload) → submit → poll → fetch →
write the GeoPackage. :class:`BackendStatusTask`: ``/health`` + ``/models`` for the dock's
status line. Their ``finished()`` runs on the GUI thread and emits a plain Python outcome.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsGeometry,
    QgsRasterBlockFeedback,
    QgsTask,
)
from qgis.PyQt.QtCore import pyqtSignal

from .api_client import FINISHED, REQUEST_TIMEOUT, ApiClient, BackendError, BackendUnreachable
from .backend_process import BackendProcess
from .backend_state import BackendEndpoint, BackendNotConfigured, resolve_endpoint, state_path
from .errors import PluginUserError
from .params import SegmentParams
from .raster_export import ExportJob, write_geotiff
from .results import WrittenResult, result_path, slug, write_geopackage
from .settings import PluginSettings

#: Seconds between two status requests.
POLL_INTERVAL = 0.2
#: Seconds to wait for a cancelled job to stop (it stops after the current tile).
CANCEL_WAIT = 60.0


@dataclass
class BackendConfig:
    """How to find (or start) the backend; a snapshot of the settings.

    Attributes:
        backend_url: URL from the settings ('' for the state file).
        token: Token for ``backend_url``.
        state_file: State file ('' for the default).
        request_timeout: Seconds per HTTP request.
        auto_start: Start a backend when none answers.
        python_path: Interpreter for that.
        device: ``--device`` for that.
        process: The plugin's :class:`BackendProcess` (None: never start one).
    """

    backend_url: str = ""
    token: str = ""
    state_file: str = ""
    request_timeout: float = REQUEST_TIMEOUT
    auto_start: bool = False
    python_path: str = ""
    device: str = "auto"
    process: BackendProcess | None = None

    def connect(self, is_cancelled: Callable[[], bool] | None = None,
                report: Callable[[str], None] | None = None) -> tuple[ApiClient, dict[str, Any]]:
        """A client for a backend that answers ``/health`` (blocking; not on the GUI thread).

        Starts a backend when none answers and ``auto_start`` is set.

        Returns:
            The client and the ``/health`` answer.

        Raises:
            BackendError: No backend answers and none could be started.
        """
        problem: BackendError | None = None
        try:
            endpoint = resolve_endpoint(self.backend_url, self.token, self.state_file)
            client = ApiClient(endpoint.url, endpoint.token, self.request_timeout)
            return client, client.health()
        except BackendNotConfigured as exc:
            problem = BackendUnreachable(exc.message, exc.hint)
        except BackendUnreachable as exc:
            problem = exc
        if not (self.auto_start and self.process is not None and not self.backend_url.strip()
                and self.python_path.strip()):
            raise problem
        if report is not None:
            report("starting the backend")
        self.process.start(self.python_path, state_path(self.state_file), self.device)
        endpoint = self.process.wait_ready(is_cancelled=is_cancelled)
        client = ApiClient(endpoint.url, endpoint.token, self.request_timeout)
        return client, client.health()

    def endpoint(self) -> BackendEndpoint:
        return resolve_endpoint(self.backend_url, self.token, self.state_file)


def backend_config(settings: PluginSettings, process: BackendProcess | None) -> BackendConfig:
    """The backend part of the settings."""
    return BackendConfig(
        backend_url=settings.backend_url,
        token=settings.token,
        state_file=settings.state_file,
        request_timeout=settings.request_timeout,
        auto_start=settings.auto_start,
        python_path=settings.python_path,
        device=settings.device,
        process=process,
    )


@dataclass
class RunSpec:
    """One run, fully resolved on the GUI thread.

    Attributes:
        params: Query, mode, model, extent (in the raster's CRS) and options.
        raster_path: A file the backend opens by path, or None with ``export``.
        export: The layer's data to export and upload, or None with ``raster_path``.
        raster_crs: The raster layer's CRS (the results' CRS unless ``target_crs``).
        results_folder: Folder of the GeoPackage.
        layer_name: Name of the result layer (the query).
        target_crs: Reproject the results to this CRS (None: keep the raster's).
        transform_context: The project's transform context.
        clip: Keep only polygon parts inside this geometry (in the output CRS).
    """

    params: SegmentParams
    raster_path: str | None = None
    export: ExportJob | None = None
    raster_crs: QgsCoordinateReferenceSystem = field(
        default_factory=QgsCoordinateReferenceSystem)
    results_folder: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    layer_name: str = "result"
    target_crs: QgsCoordinateReferenceSystem | None = None
    transform_context: QgsCoordinateTransformContext = field(
        default_factory=QgsCoordinateTransformContext)
    clip: QgsGeometry | None = None


@dataclass
class RunOutcome:
    """What a :class:`SegmentTask` ended with.

    Attributes:
        status: ``succeeded``, ``failed`` or ``cancelled``.
        written: The GeoPackage (succeeded only).
        error: Why it failed.
        job: The last job status from the backend.
        uploaded: Whether the raster went through the upload path.
        details: A traceback for unexpected errors (for the log).
    """

    status: str
    written: WrittenResult | None = None
    error: BackendError | None = None
    job: dict[str, Any] | None = None
    uploaded: bool = False
    details: str = ""


class JobCancelled(Exception):
    """The user cancelled (the backend job, if any, was asked to stop)."""


def execute_job(
    client: ApiClient,
    params: SegmentParams,
    raster_path: str | None,
    export: ExportJob | None,
    is_cancelled: Callable[[], bool],
    set_progress: Callable[[float], None],
    set_stage: Callable[[str], None],
    on_submitted: Callable[[str], None] | None = None,
    feedback: QgsRasterBlockFeedback | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Export and upload,) submit, poll until finished, fetch the result. Blocking.

    Shared by :class:`SegmentTask` and the Processing algorithm.

    Returns:
        The last job status and the GeoJSON FeatureCollection.

    Raises:
        JobCancelled: ``is_cancelled()`` turned true (the job is cancelled on the backend).
        BackendError: The backend refused the job, the job failed, or the connection broke.
        ExportError: The layer could not be exported for upload.
    """

    def check() -> None:
        if is_cancelled():
            raise JobCancelled()

    check()
    upload_id = None
    raster = raster_path
    base = 0.0
    if export is not None:
        upload_id = export_and_upload(client, export, feedback, check, set_stage)
        raster = None
        base = 10.0
        set_progress(base)
    check()
    set_stage("submitting the job")
    job_id = client.submit(params.to_request(raster=raster, upload_id=upload_id))
    if on_submitted is not None:
        on_submitted(job_id)
    info = poll_job(client, job_id, base, is_cancelled, set_progress, set_stage)
    raise_unless_succeeded(info, "The job failed.")
    set_stage("downloading the result")
    collection = client.result(job_id)
    check()
    return info, collection


def export_and_upload(
    client: ApiClient,
    export: ExportJob,
    feedback: QgsRasterBlockFeedback | None,
    check: Callable[[], None],
    set_stage: Callable[[str], None],
) -> str:
    """Write a layer's export to a temporary GeoTIFF, upload it, delete it. Blocking.

    Args:
        client: The client.
        export: What to read through QGIS (from ``prepare_export``).
        feedback: Lets QGIS stop reading when the task is cancelled.
        check: Raises ``JobCancelled`` once the user cancelled.
        set_stage: Receives the stage text.

    Returns:
        The backend's ``upload_id``.
    """
    set_stage("reading the layer through QGIS")
    tmpdir = tempfile.mkdtemp(prefix="rs_reasoner_")
    tif = os.path.join(tmpdir, "layer.tif")
    try:
        write_geotiff(export, tif, feedback)
        check()
        set_stage("uploading the raster")
        return client.upload(tif)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tif)
        with contextlib.suppress(OSError):
            os.rmdir(tmpdir)


def raise_unless_succeeded(info: dict[str, Any], default: str) -> None:
    """Turn a finished job's status into an exception unless it succeeded.

    Args:
        info: The last job status (``poll_job``'s answer).
        default: The message when the backend gave no ``error.detail``.

    Raises:
        JobCancelled: The job was cancelled.
        BackendError: The job failed (the backend's detail and hint).
    """
    if info["status"] == "cancelled":
        raise JobCancelled()
    if info["status"] == "failed":
        err = info.get("error") or {}
        raise BackendError(str(err.get("detail") or default), str(err.get("hint") or ""))


def poll_job(
    client: ApiClient,
    job_id: str,
    base: float,
    is_cancelled: Callable[[], bool],
    set_progress: Callable[[float], None],
    set_stage: Callable[[str], None],
    on_info: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Follow a job (segmentation or training) until it is finished. Blocking.

    Cancelling sends ``DELETE /jobs/{id}`` once, then keeps polling until the backend
    reports the job finished (or :data:`CANCEL_WAIT` seconds pass).

    Args:
        client: The client.
        job_id: The job.
        base: Progress (0–100) already used by earlier steps; the job fills up to 95.
        is_cancelled: True once the user cancelled.
        set_progress: Receives 0–100.
        set_stage: Receives the stage text.
        on_info: Receives every job status (e.g. to show the last epoch line).

    Returns:
        The last job status (``status`` is succeeded, failed or cancelled).

    Raises:
        JobCancelled: The cancelled job did not stop within :data:`CANCEL_WAIT` seconds.
        BackendError: The connection broke.
    """
    cancel_sent_at: float | None = None
    while True:
        info = client.job(job_id)
        if on_info is not None:
            on_info(info)
        status = info.get("status")
        if status in FINISHED:
            return info
        stage = str(info.get("stage") or status or "")
        messages = info.get("messages") or []
        last = str(messages[-1]) if messages else ""
        text = last if stage and last.startswith(stage) else (stage or last)
        if stage == "done":
            # The backend is done; the plugin still downloads and writes the result.
            text = "finishing"
        if cancel_sent_at is not None:
            text = f"cancelling ({text})"
        set_stage(text)
        progress = float(info.get("progress") or 0.0)
        set_progress(base + (95.0 - base) * min(max(progress, 0.0), 1.0))
        if is_cancelled():
            if cancel_sent_at is None:
                client.cancel(job_id)
                cancel_sent_at = time.monotonic()
                continue
            if time.monotonic() - cancel_sent_at > CANCEL_WAIT:
                raise JobCancelled()
        time.sleep(POLL_INTERVAL)


class BackendJobTask(QgsTask):
    """A cancellable QgsTask that runs one backend job and ends with ``self.outcome``.

    Holds the backend config, the job id, the stage text and the raster-export feedback;
    :meth:`run` maps cancellation and errors onto the outcome's ``status``, ``error`` and
    ``details``. Subclasses implement :meth:`_run` and :meth:`_emit_outcome`.

    Signals:
        stageChanged(str): The stage text (emitted from the worker thread; Qt queues it
            to the receiver's thread).
        jobSubmitted(str): The job id once the backend accepted the job.
    """

    stageChanged = pyqtSignal(str)
    jobSubmitted = pyqtSignal(str)

    def __init__(self, description: str, backend: BackendConfig, outcome: Any) -> None:
        """Args:
            description: The task manager's label.
            backend: How to reach (or start) the backend.
            outcome: The subclass's outcome, ``status="failed"`` until the run succeeds.
        """
        super().__init__(description, QgsTask.CanCancel)
        self.backend = backend
        self.outcome = outcome
        self.job_id: str | None = None
        self._stage = ""
        # Cancels QgsRasterFileWriter (it does not see QgsTask.isCanceled()).
        self._raster_feedback = QgsRasterBlockFeedback()

    def cancel(self) -> None:
        self._raster_feedback.cancel()
        super().cancel()

    # -- worker thread -----------------------------------------------------------------------

    def run(self) -> bool:
        try:
            self._run()
            self.outcome.status = "succeeded"
        except JobCancelled:
            self.outcome.status = "cancelled"
        except (BackendError, PluginUserError) as exc:
            if self.isCanceled():
                self.outcome.status = "cancelled"
            else:
                err = exc if isinstance(exc, BackendError) else BackendError(exc.message, exc.hint)
                self.outcome.status = "failed"
                self.outcome.error = err
        except Exception as exc:  # noqa: BLE001 - shown in the message bar, never raised in Qt
            self.outcome.status = "failed"
            self.outcome.error = BackendError(
                f"Unexpected error in the RS Reasoner plugin: {type(exc).__name__}: {exc}",
                "The details are in the log (View ▸ Panels ▸ Log Messages, 'RS Reasoner').",
            )
            self.outcome.details = traceback.format_exc()
        return self.outcome.status == "succeeded"

    def _run(self) -> None:
        """The job itself (worker thread); raising ends it as cancelled or failed."""
        raise NotImplementedError

    def _stage_text(self, text: str) -> None:
        if text != self._stage:
            self._stage = text
            self.stageChanged.emit(text)

    def _check(self) -> None:
        if self.isCanceled():
            raise JobCancelled()

    def _submitted(self, job_id: str) -> None:
        self.job_id = job_id
        self.jobSubmitted.emit(job_id)

    # -- GUI thread ---------------------------------------------------------------------------

    def finished(self, result: bool) -> None:  # noqa: ARG002 - outcome carries it
        if self.isCanceled() and self.outcome.status != "succeeded":
            self.outcome.status = "cancelled"
        self._emit_outcome()

    def _emit_outcome(self) -> None:
        """Emit the subclass's finished signal with ``self.outcome`` (GUI thread)."""
        raise NotImplementedError


class SegmentTask(BackendJobTask):
    """Runs one segmentation on the backend. Connect ``runFinished`` (GUI thread).

    Signals:
        stageChanged(str): The backend's stage text (emitted from the worker thread;
            Qt queues it to the receiver's thread).
        jobSubmitted(str): The job id once the backend accepted the job.
        runFinished(object): A :class:`RunOutcome`.
    """

    runFinished = pyqtSignal(object)

    def __init__(self, spec: RunSpec, backend: BackendConfig, description: str = "") -> None:
        super().__init__(description or f"RS Reasoner: {spec.params.query[:40]}", backend,
                         RunOutcome(status="failed"))
        self.spec = spec

    def _run(self) -> None:
        spec = self.spec
        outcome = RunOutcome(status="failed", uploaded=spec.export is not None)
        self.outcome = outcome
        self._stage_text("connecting to the backend")
        client, _health = self.backend.connect(self.isCanceled, self._stage_text)
        info, collection = execute_job(
            client, spec.params, spec.raster_path, spec.export,
            is_cancelled=self.isCanceled, set_progress=self.setProgress,
            set_stage=self._stage_text, on_submitted=self._submitted,
            feedback=self._raster_feedback,
        )
        outcome.job = info
        self.setProgress(97)
        self._stage_text("writing the GeoPackage")
        path = result_path(spec.results_folder, spec.params.query)
        outcome.written = write_geopackage(
            collection, path, slug(spec.params.query), spec.raster_crs,
            target_crs=spec.target_crs, transform_context=spec.transform_context,
            clip=spec.clip,
        )
        if not outcome.written.reasoning and info.get("reasoning"):
            outcome.written.reasoning = str(info["reasoning"])
        self.setProgress(100)

    def _emit_outcome(self) -> None:
        self.runFinished.emit(self.outcome)


@dataclass
class BackendStatus:
    """The backend's state for the status line.

    Attributes:
        connected: Whether ``/health`` answered.
        health: Its answer.
        models: ``/models``' list.
        error: Why not connected.
        endpoint: URL it answered at.
    """

    connected: bool
    health: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    error: BackendError | None = None
    endpoint: str = ""


class BackendStatusTask(QgsTask):
    """Asks the backend for ``/health`` and ``/models``; emits ``statusReady`` (GUI thread).

    With ``start=True`` it starts a backend first when none answers (auto-start).
    """

    statusReady = pyqtSignal(object)

    def __init__(self, backend: BackendConfig, start: bool = False) -> None:
        super().__init__("RS Reasoner: backend status", QgsTask.CanCancel)
        self.backend = backend
        self.start = start
        self.status = BackendStatus(connected=False)

    def run(self) -> bool:
        try:
            cfg = self.backend
            if not self.start:
                cfg = dataclasses.replace(cfg, auto_start=False)
            client, health = cfg.connect(self.isCanceled)
            models: list[dict[str, Any]] = []
            with contextlib.suppress(BackendError):
                models = client.models()
            self.status = BackendStatus(True, health, models, endpoint=client.url)
        except BackendError as exc:
            self.status = BackendStatus(False, error=exc)
        except Exception as exc:  # noqa: BLE001
            self.status = BackendStatus(False, error=BackendError(f"{type(exc).__name__}: {exc}"))
        return self.status.connected

    def finished(self, result: bool) -> None:  # noqa: ARG002
        self.statusReady.emit(self.status)


def format_status(status: BackendStatus) -> str:
    """One line for the dock: connected or not, device, GPU, free memory, loaded models."""
    if not status.connected:
        return f"Backend: not connected — {status.error}" if status.error else (
            "Backend: not connected")
    h = status.health
    parts = [f"Backend {h.get('version', '?')}: connected", f"device {h.get('device', '?')}"]
    if h.get("gpu_name"):
        parts.append(str(h["gpu_name"]))
    free, total = h.get("gpu_memory_free"), h.get("gpu_memory_total")
    if isinstance(free, (int, float)) and isinstance(total, (int, float)) and total:
        parts.append(f"{free / 1024**3:.1f}/{total / 1024**3:.1f} GiB free")
    loaded = h.get("loaded_models") or []
    parts.append("models loaded: " + (", ".join(loaded) if loaded else "none"))
    return " · ".join(parts)
