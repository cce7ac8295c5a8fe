"""``GET /health`` and ``GET /models``: what the backend runs on and what it can run."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from fastapi import APIRouter

from rs_reasoner import __version__
from rs_reasoner.service.deps import Jobs, Pipeline
from rs_reasoner.service.responses import HealthResponse, ModelsResponse

log = logging.getLogger(__name__)

router = APIRouter(tags=["service"])


def gpu_info(device: str) -> dict[str, Any]:
    """``gpu_name``, ``gpu_memory_total`` and ``gpu_memory_free`` (bytes) of a CUDA device;
    all None for CPU devices or when torch/CUDA is unavailable."""
    info: dict[str, Any] = {"gpu_name": None, "gpu_memory_total": None, "gpu_memory_free": None}
    if not device.startswith("cuda"):
        return info
    try:
        import torch

        if not torch.cuda.is_available():
            return info
        _, _, idx = device.partition(":")
        index = int(idx) if idx else torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        info.update(
            gpu_name=torch.cuda.get_device_name(index),
            gpu_memory_total=int(total),
            gpu_memory_free=int(free),
        )
    except Exception:  # noqa: BLE001 - health must answer even if CUDA misbehaves
        log.debug("GPU query failed", exc_info=True)
    return info


def process_memory() -> dict[str, int | None]:
    """``memory_rss`` (now) and ``memory_peak_rss`` of this process in bytes; None where
    the platform does not tell (current RSS is read from /proc, Linux only)."""
    info: dict[str, int | None] = {"memory_rss": None, "memory_peak_rss": None}
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            info["memory_rss"] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes.
        info["memory_peak_rss"] = peak if sys.platform == "darwin" else peak * 1024
    except (ImportError, OSError, ValueError):
        pass
    return info


@router.get("/health", response_model=HealthResponse)
def health(pipeline: Pipeline, jobs: Jobs) -> dict[str, Any]:
    """Version, device, GPU and its memory, loaded models, queue length, the process's
    memory and the disk its stored results use."""
    device = pipeline.device
    current = jobs.current()
    return {
        "status": "ok",
        "version": __version__,
        "device": device,
        **gpu_info(device),
        "loaded_models": list(pipeline.loaded_models()),
        "queue_length": jobs.queue_length(),
        "running_job": current.id if current is not None else None,
        **process_memory(),
        "results_disk_bytes": jobs.results.total_bytes(),
    }


@router.get("/models", response_model=ModelsResponse)
def models(pipeline: Pipeline) -> dict[str, Any]:
    """Registered models, their modes, defaults and whether their weights are present."""
    from rs_reasoner import weights
    from rs_reasoner.segmenters import registry

    loaded = set(pipeline.loaded_models())
    out = []
    for spec in registry.specs():
        ws = [
            {
                "repo_id": w.repo_id,
                "filename": w.filename,
                "revision": w.revision,
                "purpose": w.purpose,
                "available": weights.is_available(w),
            }
            for w in spec.weights
        ]
        out.append(
            {
                "name": spec.name,
                "modes": [m.value for m in spec.modes],
                "description": spec.description,
                "default_for": [m.value for m in spec.default_for],
                "weights": ws,
                "weights_available": all(w["available"] for w in ws),
                "loaded": spec.name in loaded,
                "trained": "trained" in spec.tags,
                "classes": list(spec.classes) if spec.classes is not None else None,
            }
        )
    return {"models": out}
