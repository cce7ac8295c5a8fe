"""The service side of ``POST /train``: checks at submit time, runs in the job worker
(a segmenter on labelled parcels, or with ``kind: reasoner`` the reasoning prompter).

Training shares the job worker (and the GPU) with segmentation, one job at a time. Before
a run, models the segmentation pipeline keeps resident are unloaded so training has the
GPU's memory; they load again on the next segmentation job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from rs_reasoner.reasoner_request import run_reasoner_request
from rs_reasoner.schemas import AnyTrainRequest, ReasonerTrainRequest
from rs_reasoner.service.checks import check_train_request
from rs_reasoner.training_run import ProgressFn, run_training

log = logging.getLogger(__name__)


class Trainer:
    """Runs training requests for the :class:`~rs_reasoner.service.jobs.JobManager`.

    Args:
        device: Torch device, or a callable giving it (the pipeline resolves ``auto``).
        options: Extra training options applied to every request (e.g. a smaller U-Net:
            ``{"base_channels": 16}``); see ``rs_reasoner.training_run.check_options``.
        before_run: Called before each run (frees the segmentation models).
    """

    def __init__(
        self,
        device: str | Callable[[], str] = "auto",
        options: Mapping[str, Any] | None = None,
        before_run: Callable[[], None] | None = None,
    ) -> None:
        self._device = device
        self.options = dict(options or {})
        self._before_run = before_run

    @property
    def device(self) -> str:
        """The device training runs on."""
        return self._device() if callable(self._device) else self._device

    def validate(self, request: AnyTrainRequest, raster_path: str) -> None:
        """Cheap checks (see :func:`~rs_reasoner.service.checks.check_train_request`).

        Raises:
            RsReasonerError: What is wrong and how to fix it.
        """
        check_train_request(request, raster_path)

    def run(
        self,
        request: AnyTrainRequest,
        raster_path: str,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        note: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Train and register the model.

        Args:
            request: The request (a segmenter, or the reasoning prompter).
            raster_path: The raster (the request's path or an upload's file); for a
                reasoner request on a folder of examples, that folder.
            progress: ``progress(stage, fraction, message)``.
            cancel: Stops training after the current step (``JobCancelled``).
            note: Receives log lines (one per epoch or GRPO step).

        Returns:
            The job's result (model, classes, scores, checkpoint).
        """
        if self._before_run is not None:
            self._before_run()
        if isinstance(request, ReasonerTrainRequest):
            try:
                return run_reasoner_request(
                    request,
                    raster_path if request.has_raster else None,
                    device=self.device,
                    progress=progress,
                    note=note,
                    cancel=cancel,
                )
            finally:
                _free_cuda(self.device)
        report = progress or (lambda stage, fraction, message: None)
        try:
            outcome = run_training(
                request,
                raster_path,
                device=self.device,
                # Stage and fraction only: the job's messages get one line per epoch (note).
                progress=lambda stage, fraction, message: report(stage, fraction, None),
                note=note,
                cancel=cancel,
                options=self.options,
            )
        finally:
            _free_cuda(self.device)
        if note is not None:
            note(f"model '{outcome.name}' registered ({outcome.stopped})")
        return outcome.result()


def _free_cuda(device: str) -> None:
    """Return cached GPU memory after training, for the next segmentation job."""
    if not device.startswith("cuda"):
        return
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        log.debug("emptying the CUDA cache failed", exc_info=True)
