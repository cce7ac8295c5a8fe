"""The folder of models trained here, and their ``model.json`` descriptions.

Layout: ``$RS_REASONER_MODELS_DIR`` if set, else ``platformdirs.user_data_dir("rs-reasoner")
/models``; one folder per model, named after it, holding the served file (``best.pt``, or
what ``model.json`` names, e.g. ``classical.json``), ``history.json`` and ``model.json``
(name, classes, sources, plan, scores, an ``auto`` run's comparison). While a run may be
resumed, ``last.pt`` (resume state) and an ``auto`` run's ``candidates/`` are there too;
once it ends they are deleted unless it was asked to keep them. A folder counts as a model
once ``model.json`` and its served file are both there, so a training run that never
finished an epoch is never listed.

The registry (:mod:`rs_reasoner.segmenters.registry`) rescans this folder whenever it lists
or looks up models, so a model trained by another process appears without a restart; it
serves each one through :func:`rs_reasoner.segmenters.trained.trained_model_spec`.
Nothing here imports torch or the segmenters.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rs_reasoner.atomic import write_text_atomic
from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.schemas import MODEL_NAME_PATTERN

ENV_MODELS_DIR = "RS_REASONER_MODELS_DIR"
MODEL_JSON = "model.json"
BEST = "best.pt"
#: The resume state of a network's training run (kept only while it may be resumed).
LAST = "last.pt"
#: One entry per finished epoch (``rs_reasoner.training_run.read_history``).
HISTORY = "history.json"
#: A classical learner's model file (``model.json``'s ``checkpoint`` names it), and the
#: comparison a ``model auto`` training run leaves (see ``rs_reasoner_training.auto``).
CLASSICAL_FILE = "classical.json"
AUTO_FILE = "auto.json"
#: Subfolder of a model trained with ``model="auto"`` where each candidate trains (and resumes).
CANDIDATES_DIR = "candidates"
#: Tag of trained models' specs in the registry.
TRAINED_TAG = "trained"
MAX_NAME_LENGTH = 40

_NAME = re.compile(MODEL_NAME_PATTERN)


def models_dir() -> Path:
    """The folder holding trained models (not created here).

    Returns:
        ``$RS_REASONER_MODELS_DIR`` or ``<user data dir>/rs-reasoner/models``.
    """
    env = os.environ.get(ENV_MODELS_DIR, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("rs-reasoner")) / "models"


def model_folder(name: str) -> Path:
    """Folder of the model ``name`` (which must be a valid name)."""
    return models_dir() / name


def sanitise_name(text: str) -> str:
    """A valid model name made from any text (e.g. a labels file's stem).

    Args:
        text: Free text.

    Returns:
        Lowercase letters, digits, ``-`` and ``_`` only, at most 40 characters
        (``"My Parcels (2024)"`` → ``"my-parcels-2024"``); ``"model"`` if nothing is left.
    """
    name = re.sub(r"[^a-z0-9_]+", "-", text.strip().lower()).strip("-_")
    return name[:MAX_NAME_LENGTH].rstrip("-_") or "model"


def check_name(name: str, reserved: Iterable[str] = ()) -> str:
    """Refuse names that are not allowed for a trained model.

    Args:
        name: The wanted name.
        reserved: Names taken by registered (built-in) models.

    Returns:
        ``name``.

    Raises:
        InvalidRequestError: Bad characters or length, or a built-in model's name.
    """
    if not _NAME.fullmatch(name):
        raise InvalidRequestError(
            f"Model name {name!r} is not allowed.",
            f"Use 1-{MAX_NAME_LENGTH} lowercase letters, digits, '-' or '_', e.g. "
            f"{sanitise_name(name)!r}.",
        )
    if name in set(reserved):
        raise InvalidRequestError(
            f"'{name}' is the name of a built-in model.",
            "Choose another name for the trained model (e.g. add a suffix: "
            f"'{name[: MAX_NAME_LENGTH - 8]}-trained').",
        )
    return name


@dataclass(frozen=True)
class TrainedModel:
    """A trained model found in the models folder.

    Attributes:
        name: Its name (= folder name).
        folder: Its folder.
        classes: Output classes, in channel order.
        info: The whole ``model.json``.
    """

    name: str
    folder: Path
    classes: tuple[str, ...]
    info: dict[str, Any]

    @property
    def checkpoint(self) -> Path:
        """The file served: ``best.pt``, or what ``model.json`` names (``classical.json``)."""
        return self.folder / str(self.info.get("checkpoint") or BEST)

    @property
    def description(self) -> str:
        """One line for ``rs-reasoner models list`` and ``GET /models``."""
        images = self.info.get("images")
        labels = Path(str(self.info.get("labels") or "parcels")).name
        field = self.info.get("class_field")
        source = f"{labels}, field {field}" if field else labels
        if images:
            source = f"images in {images} with masks"
        text = f"Trained here on {source}: {', '.join(self.classes)}"
        miou = self.info.get("best_miou")
        if isinstance(miou, int | float):
            text += f"; validation mIoU {miou:.3f}"
        return text + "."


def read_info(folder: Path) -> dict[str, Any] | None:
    """``model.json`` of a folder, or None when missing or unreadable."""
    try:
        data = json.loads((folder / MODEL_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_info(folder: Path, info: dict[str, Any]) -> Path:
    """Write ``model.json`` atomically (a reader sees the old or the new file, never half).

    Args:
        folder: The model's folder (created if missing).
        info: JSON-serialisable description; NaN/inf are written as null.

    Returns:
        The file written.
    """
    text = json.dumps(_json_safe(info), indent=1, sort_keys=True, allow_nan=False)
    return write_text_atomic(folder / MODEL_JSON, text + "\n")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _load(folder: Path) -> TrainedModel | None:
    if not _NAME.fullmatch(folder.name):
        return None
    info = read_info(folder)
    # The served weights: best.pt, or what model.json names (a fine-tuned prompter's
    # adapter folder); a plain name inside the folder only.
    served = str((info or {}).get("checkpoint") or BEST)
    if Path(served).name != served or not (folder / served).exists():
        return None
    classes = info.get("classes") if info else None
    if not isinstance(classes, list) or not classes:
        return None
    return TrainedModel(folder.name, folder, tuple(str(c) for c in classes), info)


def list_models(reserved: Iterable[str] = ()) -> list[TrainedModel]:
    """Trained models in the models folder, sorted by name.

    Args:
        reserved: Registered (built-in) names; folders with such a name are skipped, so a
            built-in model can never be shadowed.

    Returns:
        The models (folders without ``model.json`` + ``best.pt`` are skipped).
    """
    root = models_dir()
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    taken = set(reserved)
    found = (_load(f) for f in folders if f.name not in taken)
    return [m for m in found if m is not None]


def find_model(name: str, reserved: Iterable[str] = ()) -> TrainedModel | None:
    """The trained model called ``name``, or None."""
    if not _NAME.fullmatch(name) or name in set(reserved):
        return None
    return _load(models_dir() / name)
