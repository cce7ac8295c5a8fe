"""Reading the checkpoints that training writes, and rebuilding the model in one.

``best.pt`` holds what serving needs (weights, model spec, class names, metrics);
``last.pt`` adds what resuming needs. Both are ``torch.save`` dicts tagged with
:data:`FORMAT`, loaded with ``weights_only=True`` (tensors and plain data only).

Stored weights are the whole state dict, except for an RS-ZeroSeg on pretrained
backbones, whose frozen backbone weights are left out and restored from the local
backbone files when the model is rebuilt from its spec (``load_checkpoint_state``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rs_reasoner.errors import CheckpointError

#: Format tag stored in every checkpoint.
FORMAT = "rs-reasoner-training/1"


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict:
    """Load a training checkpoint (tensors and plain data only).

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


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load stored weights (strict: every stored key must fit).

    Models built on pretrained backbones (RS-ZeroSeg) define ``load_checkpoint_state`` for
    their partial state; others load their whole ``state_dict``.

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
    from rs_reasoner.models.build import build_model

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
