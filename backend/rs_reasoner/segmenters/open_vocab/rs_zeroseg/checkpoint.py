"""Saving and loading checkpoints of the open-vocabulary RS-ZeroSeg network (one
``torch.save`` file, atomically written), for :class:`~.segmenter.RSZeroSegSegmenter`.

No shipped command writes these: a model fine-tuned on the user's classes with
``rs-reasoner train --train-option model=rs-zeroseg`` is stored and served as a trained
model (:mod:`rs_reasoner.models.checkpoint`). :func:`checkpoint_keys` is shared by both.

**Format** (``format_version`` 1), a dict loadable with ``torch.load(weights_only=True)``:

* ``format``: ``"rs-zeroseg"``; ``format_version``: 1.
* ``config``: :meth:`RSZeroSegConfig.to_dict` — enough to rebuild the network.
* ``backbones``: ``"embedded"`` or ``"pretrained"``. What ``state_dict`` holds depends on
  it: a model built on pretrained backbones stores only what training changed — every
  new RS-ZeroSeg module plus the backbone parameters its freezing policy trains (CLIP
  attention layers by default) — and the frozen rest is reloaded from the pretrained
  weights through :func:`rs_reasoner.weights.resolve` (~130 MB instead of ~700 MB for
  ViT-B/16 + DINOv2-S). A model with random backbones (tests, plumbing) stores
  everything, since its frozen weights exist nowhere else. Loading checks that exactly
  the expected keys are there.
* ``class_names``: the training classes, each a list of synonyms.
* ``text``: ``templates`` (prompt templates) and ``embeddings`` (C, D) — the class text
  embeddings used in training, reused verbatim at inference for those classes.
* ``meta``: free-form plain data (step, metrics, data description).

**Atomic write.** The file is written to a temporary file in the same folder, flushed
and fsynced, then moved over the target with :func:`os.replace`; a crash or exception
mid-write leaves the previous checkpoint untouched and removes the temporary file.

**Errors.** A missing, unreadable/truncated, foreign or incompatible file raises
:class:`~rs_reasoner.errors.CheckpointError` with a hint on what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rs_reasoner.atomic import write_atomic
from rs_reasoner.errors import CheckpointError
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.config import RSZeroSegConfig
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.model import RSZeroSeg

FORMAT = "rs-zeroseg"
FORMAT_VERSION = 1
_REQUIRED = ("config", "backbones", "state_dict", "class_names", "text")
_HINT = "Save the RS-ZeroSeg checkpoint again with save_checkpoint, or use a valid one."


@dataclass
class LoadedCheckpoint:
    """A loaded checkpoint.

    Attributes:
        model: The network (eval mode, on the requested device).
        class_names: Training classes, each a tuple of synonyms.
        text_embeddings: (C, D) their text embeddings, on the model's device.
        templates: Prompt templates the embeddings were made with.
        meta: Free-form metadata.
        path: The file.
    """

    model: RSZeroSeg
    class_names: list[tuple[str, ...]]
    text_embeddings: torch.Tensor
    templates: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def checkpoint_keys(model: RSZeroSeg, embedded: bool) -> set[str]:
    """State-dict keys a checkpoint of ``model`` holds.

    Args:
        model: The network.
        embedded: Whether the backbones are stored too (random-init models); otherwise
            only new modules and trained backbone weights (the rest is rebuilt from the
            local backbone files).

    Returns:
        The keys.
    """
    keys = set(model.state_dict())
    if embedded:
        return keys
    return {k for k in keys if not model.is_backbone_key(k)} | set(model.trainable_backbone_names())


def model_state(model: RSZeroSeg, include_backbones: bool) -> dict[str, torch.Tensor]:
    """The part of the state dict a checkpoint stores (see the module docstring)."""
    keep = checkpoint_keys(model, include_backbones)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in keep}


def save_checkpoint(
    path: str | Path,
    model: RSZeroSeg,
    class_names: Sequence[Sequence[str]],
    text_embeddings: torch.Tensor | None = None,
    templates: Sequence[str] | None = None,
    meta: dict[str, Any] | None = None,
    include_backbones: bool | None = None,
) -> Path:
    """Write a checkpoint atomically.

    Args:
        path: Target file (its folder is created).
        model: The network.
        class_names: Training classes, each a sequence of synonyms.
        text_embeddings: (C, D) their embeddings; default: encoded now with
            ``model.encode_classes(class_names, templates)``.
        templates: Prompt templates; default the shared remote-sensing templates.
        meta: Plain-data metadata (numbers, strings, lists, dicts).
        include_backbones: Store the frozen backbone weights too; default: only when the
            backbones are not pretrained (they could not be rebuilt otherwise).

    Returns:
        The written path.
    """
    from rs_reasoner.segmenters.open_vocab.prompts import TEMPLATES

    path = Path(path)
    templates = tuple(templates or TEMPLATES)
    names = [[str(s) for s in syn] for syn in class_names]
    if text_embeddings is None:
        text_embeddings = model.encode_classes(names, templates)
    if text_embeddings.shape[0] != len(names):
        raise ValueError(f"{text_embeddings.shape[0]} embeddings for {len(names)} classes")
    embedded = not model.pretrained_backbones if include_backbones is None else include_backbones
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "backbones": "embedded" if embedded else "pretrained",
        "state_dict": model_state(model, embedded),
        "class_names": names,
        "text": {
            "templates": list(templates),
            "embeddings": text_embeddings.detach().float().cpu().clone(),
        },
        "meta": dict(meta or {}),
    }
    write_atomic(path, lambda f: torch.save(payload, f))
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint's payload without building the model.

    Args:
        path: The file.

    Returns:
        The payload dict (tensors on CPU).

    Raises:
        CheckpointError: Missing, unreadable, not an RS-ZeroSeg checkpoint, or a newer
            format version.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"RS-ZeroSeg checkpoint {path} does not exist.", _HINT)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - truncated zip, pickle errors, I/O: all corrupt
        raise CheckpointError(
            f"RS-ZeroSeg checkpoint {path} is corrupt or unreadable "
            f"({type(error).__name__}: {error}).",
            _HINT,
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an RS-ZeroSeg checkpoint.", _HINT)
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"RS-ZeroSeg checkpoint {path} has format version {version!r}; this version of "
            f"rs-reasoner reads up to {FORMAT_VERSION}.",
            "Upgrade rs-reasoner or re-train the checkpoint with this version.",
        )
    missing = [k for k in _REQUIRED if k not in payload]
    if missing or payload["backbones"] not in ("embedded", "pretrained"):
        raise CheckpointError(
            f"RS-ZeroSeg checkpoint {path} is incomplete (missing {missing or 'backbones'}).",
            _HINT,
        )
    return payload


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", allow_download: bool = False
) -> LoadedCheckpoint:
    """Rebuild the model from a checkpoint.

    Args:
        path: The file.
        device: Torch device for the model.
        allow_download: Let pretrained backbone weights be downloaded if not cached.

    Returns:
        The loaded checkpoint.

    Raises:
        CheckpointError: See :func:`read_checkpoint`; also an invalid config or state
            that does not fit the architecture.
        MissingWeightsError: The pretrained backbone weights are not on disk.
    """
    path = Path(path).expanduser()
    payload = read_checkpoint(path)
    try:
        config = RSZeroSegConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"RS-ZeroSeg checkpoint {path} has an invalid config: {error}", _HINT
        ) from None
    embedded = payload["backbones"] == "embedded"
    model = RSZeroSeg.from_config(config, pretrained=not embedded, allow_download=allow_download)
    state = payload["state_dict"]
    expected = checkpoint_keys(model, embedded)
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise CheckpointError(
            f"RS-ZeroSeg checkpoint {path} does not fit its architecture "
            f"({len(missing)} missing keys, e.g. {missing[:3]}; {len(unexpected)} unexpected, "
            f"e.g. {unexpected[:3]}).",
            _HINT,
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise CheckpointError(
            f"RS-ZeroSeg checkpoint {path} does not fit: {error}", _HINT
        ) from None
    text = payload["text"]
    names = [tuple(str(s) for s in syn) for syn in payload["class_names"]]
    emb = text.get("embeddings") if isinstance(text, dict) else None
    if not isinstance(emb, torch.Tensor) or tuple(emb.shape) != (len(names), model.text_dim):
        raise CheckpointError(
            f"RS-ZeroSeg checkpoint {path} has text embeddings that do not match its classes.",
            _HINT,
        )
    model = model.to(device).eval()
    return LoadedCheckpoint(
        model=model,
        class_names=names,
        text_embeddings=emb.to(device),
        templates=tuple(text.get("templates") or ()),
        meta=dict(payload.get("meta") or {}),
        path=path,
    )
