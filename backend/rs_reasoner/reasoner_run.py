"""One prompter fine-tuning run, start to end: find the trainer, train, register.

What ``rs-reasoner train-reasoner`` runs. The training package is found through the
``rs_reasoner.reasoner_trainers`` entry point (never imported here); its
``train_reasoner`` writes adapter folders into ``<models dir>/<name>``, and
:func:`register_adapter` points ``model.json`` at the newest complete one (kind
``reasoner-adapter``), after which ``rs-reasoner models list`` shows the model and
``segment --model NAME`` serves base + adapter. A cancelled or time-limited run is
registered too; the same command resumes it.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.metadata import entry_points
from typing import Any

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.segmenters.reasoning.adapter import (
    ADAPTER_KIND,
    ADAPTER_PREFIX,
    newest_adapter,
    read_adapter_meta,
)
from rs_reasoner.trained_models import model_folder, read_info, write_info
from rs_reasoner.training_plugin import TrainingUnavailableError

GROUP = "rs_reasoner.reasoner_trainers"
ProgressFn = Callable[[str, float, "str | None"], None]


def load_reasoner_trainer() -> Any:
    """The installed reasoner trainer (first entry point of :data:`GROUP` by name).

    Raises:
        TrainingUnavailableError: None installed, or it fails to import.
    """
    found = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
    if not found:
        raise TrainingUnavailableError(
            "Fine-tuning the prompter needs the rs_reasoner_training package with its "
            "reasoner extra, which is not installed.",
            "Install it: pip install -e '.[reasoner]' in the repository.",
        )
    try:
        trainer = found[0].load()
    except Exception as exc:  # an ImportError deep inside: say what
        raise TrainingUnavailableError(
            f"The reasoner trainer ({found[0].value}) cannot be imported: "
            f"{type(exc).__name__}: {exc}",
            "Install the reasoner extra: pip install -e '.[reasoner]' (it adds peft).",
        ) from None
    return trainer() if isinstance(trainer, type) else trainer


def run_reasoner_training(
    name: str,
    examples: str,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Train (or resume) the fine-tuned prompter ``name`` and register it.

    Args:
        name: The model's name (checked by the caller).
        examples: Polygon layer or EarthReason-style folder.
        progress: ``progress(stage, fraction, message)``.
        cancel: Stop event (the adapter so far is registered, then ``JobCancelled``).
        **kwargs: The trainer's ``train_reasoner`` arguments (raster, query_field, ...,
            GRPO options).

    Returns:
        The ``model.json`` written.
    """
    trainer = load_reasoner_trainer()
    unknown = set(kwargs) - _ARGUMENTS - trainer.option_names()
    if unknown:
        raise InvalidRequestError(
            f"Unknown training option(s): {', '.join(sorted(unknown))}.",
            f"Known: {', '.join(sorted(trainer.option_names()))}.",
        )
    folder = model_folder(name)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result = trainer.train_reasoner(
            examples, folder, callback=progress, cancel=cancel, **kwargs
        )
    except BaseException:
        # Cancel, Ctrl-C or a failure: what was published is registered (the same command
        # resumes); a first run that wrote nothing leaves no folder.
        with contextlib.suppress(Exception):
            register_adapter(name, stopped="cancelled")
        with contextlib.suppress(OSError):
            if not any(folder.iterdir()):
                folder.rmdir()
        raise
    info = register_adapter(name, stopped=result.stopped)
    if info is None:
        raise InvalidRequestError(f"Training '{name}' published no adapter.")
    return info


_ARGUMENTS = frozenset({
    "raster", "layer", "query_field", "query", "bands", "holdout_fraction", "negatives",
    "base_prompter", "sam_variant", "sam_checkpoint", "device",
})  # fmt: skip


def register_adapter(name: str, stopped: str = "completed") -> dict[str, Any] | None:
    """Point ``model.json`` at the newest complete adapter and drop older ones.

    Returns:
        The description written, or None when no adapter is there yet.
    """
    folder = model_folder(name)
    adapter = newest_adapter(folder)
    if adapter is None:
        return None
    meta = read_adapter_meta(adapter)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    previous = read_info(folder) or {}
    queries = [str(q) for q in meta.get("queries") or []] or ["target"]
    info = {
        "name": name,
        "kind": ADAPTER_KIND,
        "classes": queries[:10],
        "created": previous.get("created", now),
        "updated": now,
        "checkpoint": adapter.name,
        "base_prompter": meta.get("base_prompter"),
        "sam": meta.get("sam"),
        "examples": meta.get("examples"),
        "raster": meta.get("raster"),
        "steps": meta.get("step"),
        "options": meta.get("options"),
        "heldout_iou_before": meta.get("heldout_iou_before"),
        "heldout_iou_after": meta.get("heldout_iou_after"),
        "stopped": stopped,
    }
    write_info(folder, info)
    for old in folder.glob(f"{ADAPTER_PREFIX}*"):
        if old.is_dir() and old.name < adapter.name:
            shutil.rmtree(old, ignore_errors=True)
    return read_info(folder)

