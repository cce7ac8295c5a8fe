"""The JSON bodies the HTTP API answers with, as pydantic models.

They document the API in ``/docs`` and filter what a route returns; the routes build
their answers as plain dicts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    detail: str
    hint: str | None = None


class HealthResponse(BaseModel):
    status: str = "ok"
    version: str
    device: str
    gpu_name: str | None = Field(None, description="CUDA device name; null on CPU.")
    gpu_memory_total: int | None = Field(None, description="Bytes; null on CPU.")
    gpu_memory_free: int | None = Field(None, description="Bytes; null on CPU.")
    loaded_models: list[str]
    queue_length: int = Field(description="Jobs waiting to run.")
    running_job: str | None = Field(None, description="Id of the running job.")
    memory_rss: int | None = Field(
        None, description="Resident memory of the backend process now, bytes (null where "
        "the platform does not say)."
    )
    memory_peak_rss: int | None = Field(
        None, description="Peak resident memory of the backend process, bytes."
    )
    results_disk_bytes: int = Field(0, description="Disk used by stored job results, bytes.")


class WeightsInfo(BaseModel):
    repo_id: str
    filename: str | None = None
    revision: str | None = None
    purpose: str = ""
    available: bool


class ModelInfo(BaseModel):
    name: str
    modes: list[str]
    description: str
    default_for: list[str]
    weights: list[WeightsInfo]
    weights_available: bool = Field(description="All weights are on disk (or none needed).")
    loaded: bool
    trained: bool = Field(False, description="Trained here (rs-reasoner train, POST /train).")
    classes: list[str] | None = Field(
        None, description="The classes a trained model knows (query a subset); null otherwise."
    )


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class UploadResponse(BaseModel):
    upload_id: str
    size: int = Field(description="Bytes received.")


class JobCreated(BaseModel):
    id: str
    status: str


class JobError(BaseModel):
    detail: str
    hint: str | None = None


class JobInfo(BaseModel):
    id: str
    kind: str = Field("segment", description="segment or train")
    status: str = Field(description="queued, running, succeeded, failed or cancelled")
    stage: str
    progress: float = Field(description="0..1")
    messages: list[str]
    error: JobError | None = None
    created: str | None
    started: str | None = None
    finished: str | None = None
    model: str | None = None
    mode: str | None = None
    query: str = Field(description="The segmentation query; empty for training jobs.")
    reasoning: str | None = None
    feature_count: int | None = None
    cancel_requested: bool = False


class TrainResult(BaseModel):
    model: str = Field(description="Name of the trained model (use it in POST /jobs).")
    classes: list[str]
    best_miou: float | None = Field(description="Validation mIoU of the served weights.")
    best_epoch: int = Field(description="Epoch (1-based) of the served weights.")
    per_class_iou: dict[str, float | None]
    epochs_run: int
    checkpoint: str = Field(description="Path of the served weights (best.pt).")


class ReasonerTrainResult(BaseModel):
    model: str = Field(description="Name of the fine-tuned prompter (a reasoning model).")
    kind: str = Field(description="'reasoner'.")
    classes: list[str] = Field(description="The questions it was trained on (up to 10).")
    steps: int | None = Field(description="GRPO steps done.")
    stopped: str | None = Field(description="completed, cancelled or time_budget.")
    heldout_iou_before: float | None = Field(description="Held-out mean IoU before.")
    heldout_iou_after: float | None = Field(description="Held-out mean IoU after.")
    checkpoint: str = Field(description="Path of the served LoRA adapter folder.")


#: Answers every endpoint may give (documented once, on the app).
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong token"},
}
