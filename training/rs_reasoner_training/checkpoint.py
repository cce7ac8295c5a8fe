"""Checkpoint files: atomic writes, safe loads, RNG state, and loading a trained model.

``last.pt`` holds everything needed to resume (models, optimizer, epoch, RNG states,
history); ``best.pt`` holds only what serving needs (weights, model spec, class names,
metrics). Both are written to a temporary file in the same folder, fsynced and moved into
place with ``os.replace``, so a kill at any moment leaves the previous file intact.

Weights are what :func:`model_state` gives: the whole state dict, except for an RS-ZeroSeg
on pretrained backbones, whose frozen backbone weights are left out and restored from the
local backbone files when the model is rebuilt from its spec.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rs_reasoner.atomic import write_atomic
from rs_reasoner_training.errors import CheckpointError

#: Format tag stored in every checkpoint.
FORMAT = "rs-reasoner-training/1"
LAST, BEST = "last.pt", "best.pt"


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to ``path`` atomically (temp file + fsync + ``os.replace``).

    Args:
        obj: What to save.
        path: Destination.

    Returns:
        The destination path.
    """
    return write_atomic(path, lambda f: torch.save(obj, f))


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict:
    """Load a checkpoint written by this package (tensors and plain data only).

    ``mmap=True`` maps the tensors instead of reading them: cheap when only the metadata
    (classes, metrics) is wanted.

    Raises:
        CheckpointError: Missing, unreadable or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.", "Check the path.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # pickle/zip errors of many types all mean "unreadable"
        raise CheckpointError(
            f"Checkpoint {path} cannot be read: {str(exc).strip()[:200] or type(exc).__name__}",
            "It may be damaged or from another program; train again or use another file.",
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an RS Reasoner training checkpoint.", "Give a best.pt or last.pt."
        )
    return payload


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) global RNG states, as loadable plain data."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (CUDA states only when the device count matches)."""
    random.setstate(_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _tuples(value: Any) -> Any:
    """Lists back to tuples (random.setstate needs tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights a checkpoint stores for ``model``.

    Models built on pretrained backbones (RS-ZeroSeg) define ``checkpoint_state()`` to
    leave out frozen weights that the local backbone files restore; others store their
    whole ``state_dict()``.
    """
    if hasattr(model, "checkpoint_state"):
        return model.checkpoint_state()
    return model.state_dict()


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load :func:`model_state` output (strict: every stored key must fit).

    Raises:
        RuntimeError: Missing/unexpected keys or wrong shapes.
    """
    if hasattr(model, "load_checkpoint_state"):
        model.load_checkpoint_state(state)
    else:
        model.load_state_dict(state)


def load_trained_model(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, list[str], dict[str, Any]]:
    """Rebuild the model saved in a ``best.pt`` (or ``last.pt``) for inference.

    Args:
        path: Checkpoint path.
        map_location: Device for the weights.

    Returns:
        (model in eval mode, class names, the checkpoint's metadata without weights).

    Raises:
        CheckpointError: Unreadable file, or no model spec stored (a model trained
            outside this package is rebuilt by its own loader).
        MissingWeightsError: An RS-ZeroSeg trained on pretrained backbones whose files
            are not on this machine (they are restored locally, never downloaded).
    """
    from rs_reasoner_training.models import build_model

    payload = load_checkpoint(path, map_location)
    spec = payload.get("model_spec")
    if not spec:
        raise CheckpointError(
            f"{path} does not say how to rebuild its model (no model spec).",
            "Load it with the model's own loader.",
        )
    try:
        model = build_model(spec)
        load_model_state(model, payload["model"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"The model in {path} cannot be rebuilt: {exc}", "Train again."
        ) from None
    meta = {k: v for k, v in payload.items() if k not in ("model", "teacher", "optimizer")}
    return model.to(map_location).eval(), list(payload["class_names"]), meta
