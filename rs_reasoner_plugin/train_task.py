"""Fine-tuning in the background: (start the backend) → (export + upload the raster) →
(write the parcels to a GeoPackage) → ``POST /train`` → poll → training result.

:class:`TrainTask` is a QgsTask; its ``finished()`` runs on the GUI thread and emits a
plain :class:`TrainOutcome`. The dialog (:mod:`.train_dialog`) builds the
:class:`TrainSpec` on the GUI thread.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgis.PyQt.QtCore import pyqtSignal

from .api_client import BackendError
from .land_cover_export import LandCoverSource, write_sources
from .params import TrainParams
from .parcels_export import EXPORT_LAYER, ParcelsExport, write_parcels
from .raster_export import ExportJob
from .reasoner_params import ReasonerParams
from .tasks import (
    BackendConfig,
    BackendJobTask,
    export_and_upload,
    poll_job,
    raise_unless_succeeded,
)

#: An epoch line of the backend ("epoch 3/30: loss 0.412, val mIoU 0.523, ..."), or a
#: GRPO step line of a reasoner run ("training: step 3/200: reward 0.412 ...").
EPOCH_LINE = re.compile(r"\bepoch \d+/\d+|\bstep \d+/\d+")


@dataclass
class TrainSpec:
    """One fine-tuning run, resolved on the GUI thread.

    Exactly one of ``raster_path`` / ``raster_export`` and one of ``labels_path`` /
    ``parcels_export`` is set.

    Attributes:
        params: Name, class field, budget, epochs and switches; or for teaching the
            reasoner, name, query field or query and the GRPO options.
        raster_path: A raster file the backend opens by path.
        raster_export: The raster layer's data to export and upload.
        labels_path: A parcels file the backend reads by path.
        labels_layer: The table inside ``labels_path`` (GeoPackage), or None.
        parcels_export: Parcels to write to a temporary GeoPackage first.
        class_names: Distinct class values seen in the dialog (for messages).
        land_cover: Land-cover maps whose classes become weak labels (their mapping
            files, and rasters that are not files, are written by the task).
    """

    params: TrainParams | ReasonerParams
    raster_path: str | None = None
    raster_export: ExportJob | None = None
    labels_path: str | None = None
    labels_layer: str | None = None
    parcels_export: ParcelsExport | None = None
    class_names: tuple[str, ...] = ()
    land_cover: list[LandCoverSource] = field(default_factory=list)

    def request(
        self, upload_id: str | None = None, labels: str | None = None, layer: str | None = None,
        weak_labels: list[str] | None = None,
    ) -> dict[str, Any]:
        """The ``POST /train`` body; ``upload_id``/``labels``/``layer``/``weak_labels``
        fill in what the exports produced (defaults: the spec's own paths)."""
        path = labels or self.labels_path or ""
        layer = layer if labels else self.labels_layer
        raster = None if upload_id else self.raster_path
        if isinstance(self.params, ReasonerParams):
            return self.params.to_request(path, layer, raster=raster, upload_id=upload_id)
        return self.params.to_request(
            labels=path, layer=layer, raster=raster, upload_id=upload_id,
            weak_labels=weak_labels,
        )


@dataclass
class TrainOutcome:
    """What a :class:`TrainTask` ended with.

    Attributes:
        status: ``succeeded``, ``failed`` or ``cancelled``.
        result: The backend's training result (succeeded only): model, classes,
            best_miou, best_epoch, per_class_iou, epochs_run, checkpoint.
        error: Why it failed.
        job: The last job status.
        request: The body sent to ``POST /train`` (None when it was not sent).
        job_id: The backend's job id (None when no job was accepted).
        last_epoch: The last epoch line of the job.
        details: A traceback for unexpected errors (for the log).
    """

    status: str
    result: dict[str, Any] | None = None
    error: BackendError | None = None
    job: dict[str, Any] | None = None
    request: dict[str, Any] | None = None
    job_id: str | None = None
    last_epoch: str = ""
    details: str = ""


def last_epoch_line(info: dict[str, Any]) -> str:
    """The job's most recent epoch line, or ''."""
    for line in reversed(info.get("messages") or []):
        if EPOCH_LINE.search(str(line)):
            return str(line)
    return ""


class TrainTask(BackendJobTask):
    """Runs one fine-tuning job on the backend. Connect ``trainFinished`` (GUI thread).

    Signals:
        stageChanged(str): Stage text (from the worker thread; Qt queues it).
        epochChanged(str): The last epoch line, whenever it changes.
        jobSubmitted(str): The job id once the backend accepted the job.
        trainFinished(object): A :class:`TrainOutcome`.
    """

    epochChanged = pyqtSignal(str)
    trainFinished = pyqtSignal(object)

    def __init__(self, spec: TrainSpec, backend: BackendConfig) -> None:
        super().__init__(f"RS Reasoner: fine-tune '{spec.params.name}'", backend,
                         TrainOutcome(status="failed"))
        self.spec = spec

    # -- worker thread -----------------------------------------------------------------------

    def _job_info(self, info: dict[str, Any]) -> None:
        line = last_epoch_line(info)
        if line and line != self.outcome.last_epoch:
            self.outcome.last_epoch = line
            self.epochChanged.emit(line)

    def _run(self) -> None:
        spec, outcome = self.spec, self.outcome
        self._stage_text("connecting to the backend")
        client, _health = self.backend.connect(self.isCanceled, self._stage_text)
        # The exported parcels and land-cover files must outlive the job (the backend reads
        # them while preparing), so the folder goes only once the job is known to be over.
        tmpdir = Path(tempfile.mkdtemp(prefix="rs_reasoner_train_"))
        job_over = False
        try:
            upload_id = None
            if spec.raster_export is not None:
                self._check()
                upload_id = export_and_upload(client, spec.raster_export,
                                              self._raster_feedback, self._check,
                                              self._stage_text)
                self.setProgress(3.0)
            labels = layer = None
            if spec.parcels_export is not None:
                self._check()
                self._stage_text("writing the parcels to a GeoPackage")
                labels = str(tmpdir / "parcels.gpkg")
                write_parcels(spec.parcels_export, labels, self.isCanceled)
                layer = EXPORT_LAYER
            weak = None
            if spec.land_cover:
                self._stage_text("writing the land-cover maps' class mappings")
                weak = write_sources(spec.land_cover, str(tmpdir), self._check)
            self._check()
            self.setProgress(5.0)
            self._stage_text("submitting the training job")
            outcome.request = spec.request(upload_id=upload_id, labels=labels, layer=layer,
                                           weak_labels=weak)
            outcome.job_id = client.train(outcome.request)
            self._submitted(outcome.job_id)
            info = poll_job(client, outcome.job_id, 5.0, self.isCanceled, self.setProgress,
                            self._stage_text, on_info=self._job_info)
            job_over = True
            outcome.job = info
            raise_unless_succeeded(info, "The training job failed.")
            self._stage_text("fetching the result")
            outcome.result = client.train_result(outcome.job_id)
            self.setProgress(100.0)
        finally:
            # A job still running (the cancel was not confirmed in time, or the connection
            # broke) may still read the parcels: leave them to the system's temp cleanup.
            if outcome.job_id is None or job_over:
                shutil.rmtree(tmpdir, ignore_errors=True)

    def _emit_outcome(self) -> None:
        self.trainFinished.emit(self.outcome)
