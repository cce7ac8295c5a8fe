"""Writing checkpoints: atomic saves, RNG state, the weights a checkpoint stores.

``last.pt`` holds everything needed to resume (models, optimizer, epoch, RNG states,
history); ``best.pt`` holds only what serving needs (weights, model spec, class names,
metrics). Both are written to a temporary file in the same folder, fsynced and moved into
place with ``os.replace``, so a kill at any moment leaves the previous file intact.

Weights are what :func:`model_state` gives: the whole state dict, except for an RS-ZeroSeg
on pretrained backbones, whose frozen backbone weights are left out and restored from the
local backbone files when the model is rebuilt from its spec.

Reading them is the backend's job (:mod:`rs_reasoner.models.checkpoint`: the format tag,
``load_checkpoint``, ``load_model_state``, ``load_trained_model``), re-exported here for
the loop and older imports.
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
from rs_reasoner.models.checkpoint import (
    FORMAT,
    load_checkpoint,
    load_model_state,
    load_trained_model,
)
from rs_reasoner.trained_models import BEST, LAST

__all__ = [
    "BEST",
    "FORMAT",
    "LAST",
    "load_checkpoint",
    "load_model_state",
    "load_trained_model",
    "model_state",
    "rng_state",
    "save_atomic",
    "set_rng_state",
]


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to ``path`` atomically (temp file + fsync + ``os.replace``).

    Args:
        obj: What to save.
        path: Destination.

    Returns:
        The destination path.
    """
    return write_atomic(path, lambda f: torch.save(obj, f))


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
    whole ``state_dict()``. The inverse is ``load_model_state``.
    """
    if hasattr(model, "checkpoint_state"):
        return model.checkpoint_state()
    return model.state_dict()
