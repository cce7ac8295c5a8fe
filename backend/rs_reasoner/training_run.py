"""One training request, start to end: check the inputs, train into the models folder,
register the model. What ``rs-reasoner train`` and ``POST /train`` run.

* :func:`check_train_request` - cheap checks (files exist, layer and class field exist,
  name allowed), so the service answers a bad request with a 4xx at once.
* :func:`run_training` - the installed trainer's ``train_on_parcels``
  (:mod:`rs_reasoner.training_plugin`) into ``<models dir>/<name>`` (resumes from its
  ``last.pt``), then :func:`register_model`.
* :func:`register_model` - writes ``model.json`` from ``best.pt`` (only if there is one);
  from then on the registry lists the model. Also done when training is interrupted
  (Ctrl-C, cancel): the best epoch so far is usable and the next run resumes.
* :class:`EpochLog` - one line per finished epoch, read from ``history.json``.

The training package is never imported here: it is found through its entry point when
training runs (or its options are checked).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rs_reasoner.errors import CheckpointError, InvalidRequestError
from rs_reasoner.landcover import WEAK_LABELS_FILE
from rs_reasoner.schemas import TrainRequest
from rs_reasoner.trained_models import (
    AUTO_FILE,
    BEST,
    CANDIDATES_DIR,
    CLASSICAL_FILE,
    HISTORY,
    LAST,
    MODEL_JSON,
    check_name,
    model_folder,
    read_info,
    write_info,
)
from rs_reasoner.vector.layers import (
    check_field_choice,
    polygon_layer_info,
)

#: (stage, fraction 0..1, message or None), stages "preparing", "training", "done".
ProgressFn = Callable[[str, float, "str | None"], None]
NoteFn = Callable[[str], None]

#: Training-loop stages → the stages reported to users.
_STAGES = {
    "preparing": "preparing",
    "resuming": "preparing",
    "training": "training",
    "evaluating": "training",
    "saving": "training",
    "done": "done",
}
#: Set from TrainRequest fields or by the runner; not allowed as extra options.
_OWN_OPTIONS = frozenset(TrainRequest.model_fields) | {
    "output_dir", "device", "progress_bar", "callback", "cancel"
}  # fmt: skip


# -- checks ----------------------------------------------------------------------------------


def check_train_request(
    request: TrainRequest, raster_path: str, reserved: set[str] | None = None
) -> None:
    """Cheap checks of a training request (no training data is read).

    Args:
        request: The request.
        raster_path: The raster (the request's path or an upload's file).
        reserved: Names of built-in models (default: the registry's).

    Raises:
        RsReasonerError: What is wrong and how to fix it.
    """
    if reserved is None:
        from rs_reasoner.segmenters import registry

        reserved = registry.registered_names()
    check_name(request.name, reserved)
    if request.from_folders:
        check_folders(request)
        return
    if request.classes is not None and not Path(request.classes).is_file():
        raise InvalidRequestError(
            f"The class table file does not exist: {request.classes}",
            "Give a text file with one 'VALUE,NAME' line per value of the class field, or "
            "leave it out (the values are the class names).",
        )
    from rs_reasoner.raster import open_raster

    open_raster(raster_path).close()
    assert request.labels is not None and request.class_field is not None  # the schema's rule
    check_label_layer(request.labels, request.layer, request.class_field)
    if request.aoi is not None and not Path(request.aoi).exists():
        raise InvalidRequestError(
            f"The area of interest does not exist: {request.aoi}",
            "Give the path of a polygon file, or leave the area of interest out.",
        )
    if request.weak_labels:  # paths, categorical bands, mapping files, overlap
        from rs_reasoner.landcover.checks import check_products_over_raster

        check_products_over_raster(request.weak_labels, raster_path)


def check_folders(request: TrainRequest) -> None:
    """The image and mask folders and the class table file exist (their contents are
    checked when training reads them: pairs, sizes, mask values).

    Raises:
        InvalidRequestError: Which one is missing.
    """
    for path, what, folder in (
        (request.images, "image folder", True),
        (request.masks, "mask folder", True),
        (request.classes, "class table file", False),
    ):
        found = Path(str(path))
        if not (found.is_dir() if folder else found.is_file()):
            raise InvalidRequestError(
                f"The {what} does not exist: {path}",
                "Give a folder of images, a folder of masks named like them, and a class "
                "table file with one 'VALUE,NAME' or '#RRGGBB,NAME' line per class.",
            )


def check_label_layer(path: str, layer: str | None, class_field: str) -> None:
    """The label file exists, the layer is there (or the only one), it has features,
    polygon geometries and the class field; reads only the layer's metadata.

    Raises:
        InvalidRequestError: What is wrong, with the layers or fields to choose from.
    """
    info = polygon_layer_info(
        path, layer, "label layer", "Digitise some parcels (polygons with a class field) first."
    )
    check_field_choice([str(f) for f in info.get("fields", [])], class_field)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Extra training options (``--train-option``): known names only.

    Returns:
        The options as a dict.

    Raises:
        InvalidRequestError: An unknown name, or one that has its own field/flag.
    """
    from rs_reasoner.training_plugin import load_trainer

    allowed = load_trainer().option_names() - _OWN_OPTIONS
    for key in options:
        if key in _OWN_OPTIONS:
            flag = "--" + key.replace("_", "-")
            raise InvalidRequestError(
                f"Training option {key!r} has its own setting.", f"Use {flag} instead."
            )
        if key not in allowed:
            raise InvalidRequestError(
                f"Unknown training option {key!r}.", f"Known: {', '.join(sorted(allowed))}."
            )
    return dict(options)


# -- epoch lines -----------------------------------------------------------------------------


def epoch_line(metrics: Mapping[str, Any], epochs: int, prefix: str = "") -> str:
    """``epoch 3/30: loss 0.412, val mIoU 0.523, purified 12.0%, rectified 1.3%``.

    Args:
        metrics: One ``history.json`` entry (``epoch`` 0-based).
        epochs: Planned epochs.
        prefix: Put before the line (e.g. the verifier stage of two-stage runs).
    """
    parts = [f"loss {float(metrics.get('loss', math.nan)):.3f}"]
    miou, teacher = metrics.get("miou"), metrics.get("miou_teacher")
    if miou is not None:
        text = f"val mIoU {miou:.3f}"
        if teacher is not None and teacher > miou:
            text += f" (teacher {teacher:.3f})"
        parts.append(text)
    parts.append(f"purified {100 * float(metrics.get('purified_fraction') or 0):.1f}%")
    parts.append(f"rectified {100 * float(metrics.get('rectified_fraction') or 0):.1f}%")
    return f"{prefix}epoch {int(metrics['epoch']) + 1}/{epochs}: {', '.join(parts)}"


class EpochLog:
    """New epochs of a run, from its ``history.json`` files (the model's and, in two-stage
    runs, the verifier's in ``verifier/``); epochs already there at the start are skipped.

    Args:
        folder: The model's folder.
        epochs: Planned epochs.
    """

    _SOURCES = (("verifier", "verifier: "), ("", ""))

    def __init__(self, folder: Path, epochs: int) -> None:
        self.folder = folder
        self.epochs = epochs
        self._stamps: dict[str, tuple[int, int] | None] = {}
        self._seen: dict[str, int] = {}
        for sub, _ in self._sources():
            self._seen[sub] = len(self._read(sub) or [])
            self._stamps[sub] = self._stamp(sub)
        #: Epochs of the model already trained before this run (resume).
        self.done_before = self._seen[""]

    def _path(self, sub: str) -> Path:
        return self.folder / sub / "history.json"

    def _sources(self) -> list[tuple[str, str]]:
        """The model's histories, then each candidate's of an ``auto`` run (found as they
        appear, so a candidate's epochs show while it trains)."""
        found = sorted(p for p in (self.folder / CANDIDATES_DIR).glob("*") if p.is_dir())
        return [*self._SOURCES, *((f"{CANDIDATES_DIR}/{p.name}", f"{p.name}: ") for p in found)]

    def _stamp(self, sub: str) -> tuple[int, int] | None:
        try:
            st = self._path(sub).stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _read(self, sub: str) -> list[dict[str, Any]] | None:
        return read_history(self._path(sub))

    def poll(self) -> list[str]:
        """Lines of the epochs finished since the last call (a stat per file when none)."""
        lines = []
        for sub, prefix in self._sources():
            stamp = self._stamp(sub)
            if stamp is None or stamp == self._stamps.get(sub):
                continue
            self._stamps[sub] = stamp
            history = self._read(sub) or []
            seen = self._seen.get(sub, 0)
            for metrics in history[seen:]:
                lines.append(epoch_line(metrics, self.epochs, prefix))
            self._seen[sub] = max(seen, len(history))
        return lines


# -- running ---------------------------------------------------------------------------------


@dataclass
class TrainingOutcome:
    """What a finished (or interrupted) training run left.

    Attributes:
        name: The model's name.
        folder: Its folder.
        info: ``model.json`` as written.
        stopped: ``"completed"``, ``"time_budget"`` or ``"cancelled"``.
        notes: Things the user should know (dropped parcels, model and verifier used).
    """

    name: str
    folder: Path
    info: dict[str, Any]
    stopped: str
    notes: list[str] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        """The ``GET /jobs/{id}/result`` body of a training job."""
        info = self.info
        return {
            "model": self.name,
            "classes": list(info.get("classes") or []),
            "best_miou": info.get("best_miou"),
            "best_epoch": info.get("best_epoch"),
            "per_class_iou": dict(info.get("per_class_iou") or {}),
            "epochs_run": info.get("epochs_run", 0),
            "checkpoint": str(self.folder / BEST),
        }


def run_training(
    request: TrainRequest,
    raster_path: str,
    *,
    device: str = "auto",
    progress: ProgressFn | None = None,
    note: NoteFn | None = None,
    cancel: threading.Event | None = None,
    options: Mapping[str, Any] | None = None,
) -> TrainingOutcome:
    """Train (or resume) the model ``request.name`` and register it.

    Args:
        request: The request (checked with :func:`check_train_request` first).
        raster_path: The raster (the request's path or an upload's file).
        device: Torch device (``auto``: CUDA when available).
        progress: ``progress(stage, fraction, message)``; stages ``preparing``,
            ``training``, ``done``; messages are short ("epoch 3/30").
        note: Called with each line for the log: the model and verifier chosen, notes on
            the parcels, one line per finished epoch.
        cancel: When set, training stops after the current step (``JobCancelled``).
        options: Extra options of the trainer (checked by :func:`check_options`).

    Returns:
        The outcome; ``info`` is the ``model.json`` written.

    Raises:
        JobCancelled, KeyboardInterrupt: Stopped; the model is registered first when an
            epoch finished (checkpoints are kept; the same request resumes).
        RsReasonerError: Unusable inputs (see the messages), or a time budget that ended
            the run before its first epoch (nothing to register).
    """
    from rs_reasoner.training_plugin import load_trainer

    trainer = load_trainer()
    report = progress or (lambda stage, fraction, message: None)
    write = note or (lambda line: None)
    folder = model_folder(request.name)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    if not created and forget_finished_run(folder):
        write(
            f"model '{request.name}' was trained before and kept no resume state: training "
            "it again from the start (--keep-checkpoints keeps a run resumable)"
        )
    log = EpochLog(folder, request.epochs)
    if log.done_before:
        write(f"resuming model '{request.name}' after epoch {log.done_before}/{request.epochs}")

    def callback(stage: str, fraction: float, message: str | None) -> None:
        shown = _STAGES.get(stage, "training")
        if shown == "preparing" and message and stage != "resuming":
            write(message)
        for line in log.poll():
            write(line)
        report(shown, fraction, _short(message) if stage == "training" else None)

    extra = dict(options or {})
    kwargs = {
        **extra,
        # A server's options (serve --train-option) are defaults for what a request leaves out.
        "model": request.model if "model" in request.model_fields_set
        else extra.get("model", request.model),
        "epochs": request.epochs,
        "time_budget_s": request.time_budget_s,
        "semi_supervised": request.semi_supervised,
        "verifier": request.verifier,
        "device": device,
        "progress_bar": False,
        "tile_size": request.tile_size,
        "val_fraction": request.val_fraction,
        "label_budget": request.label_budget,
        "seed": request.seed,
        "bands": request.bands,
        "threads": request.threads,
        "callback": callback,
        "cancel": cancel,
    }
    try:
        if request.from_folders:
            result = trainer.train_on_folders(
                request.images, request.masks, request.classes, folder, **kwargs
            )
        else:
            result = trainer.train_on_parcels(
                raster_path,
                request.labels,
                request.class_field,
                folder,
                layer=request.layer,
                aoi=request.aoi,
                background=request.background,
                resolution=request.resolution,
                weak_labels=request.weak_labels,
                **({"classes": request.classes} if request.classes else {}),
                **kwargs,
            )
    except CheckpointError as exc:
        raise CheckpointError(
            exc.message,
            f"Choose another model name, or delete {folder} to train '{request.name}' from "
            "scratch.",
        ) from None
    except BaseException as exc:
        from rs_reasoner.errors import JobCancelled

        if isinstance(exc, JobCancelled | KeyboardInterrupt):
            register_model(request, raster_path, stopped="cancelled")
        if created:  # a first run that failed before writing anything leaves no folder
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    for line in log.poll():
        write(line)
    for line in result.extra.get("comparison_table") or []:
        write(line)  # model "auto": the candidates' validation scores and the choice
    info = register_model(request, raster_path, stopped=result.stopped,
                          plan=result.extra.get("plan"))  # fmt: skip
    if info is None:  # only a time budget ends a run before its first epoch
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise InvalidRequestError(
            f"No epoch finished within the time budget, so model '{request.name}' was not "
            "saved.",
            "Give a larger time budget (or none), or train on fewer or smaller tiles.",
        )
    if not request.keep_checkpoints:
        keep_only_served(folder, info)
    notes = [str(n) for n in (result.extra.get("model"), result.extra.get("verifier")) if n]
    return TrainingOutcome(request.name, folder, info, result.stopped, notes)


#: What a finished model's folder keeps: its description, history and comparison (the
#: served file is added from ``model.json``).
_KEPT = frozenset({MODEL_JSON, HISTORY, AUTO_FILE})


def keep_only_served(folder: Path, info: Mapping[str, Any]) -> list[Path]:
    """Delete what only resuming needs once a run has ended: ``last.pt`` (model, EMA
    teacher and optimizer state: four times the served weights), the stage-1 verifier
    of two-stage runs and the candidates of ``auto`` runs. The served file, ``model.json``
    (with the comparison), ``history.json`` and ``auto.json`` stay.

    Args:
        folder: The model's folder (registered: ``info`` is its ``model.json``).
        info: Its description (``checkpoint`` names the served file).

    Returns:
        The files and folders deleted.
    """
    keep = _KEPT | {str(info.get("checkpoint") or BEST)}
    chosen = folder / CANDIDATES_DIR / str((info.get("auto") or {}).get("chosen")) / HISTORY
    if not (folder / HISTORY).exists() and chosen.is_file():
        shutil.copyfile(chosen, folder / HISTORY)  # the served network's epochs stay
    removed = []
    for path in sorted(folder.iterdir()):
        if path.name in keep or path.name.startswith("."):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def forget_finished_run(folder: Path) -> bool:
    """Before training a model again: when its folder holds a registered model but no
    resume state (pruned by :func:`keep_only_served`), drop its old history so the new run's
    epochs are counted and shown from the start (the served file stays until replaced).

    Returns:
        Whether the folder held such a finished model (training starts over).
    """
    if read_info(folder) is None or any(folder.rglob(LAST)):
        return False
    (folder / HISTORY).unlink(missing_ok=True)
    return True


def _short(message: str | None) -> str | None:
    """"stage 1/2 (supervised-only verifier): epoch 3/30" → "verifier epoch 3/30"."""
    if not message:
        return None
    head, _, tail = message.rpartition(": ")
    return f"verifier {tail}" if head.startswith("stage 1/") else tail


def register_model(
    request: TrainRequest,
    raster_path: str,
    stopped: str = "completed",
    plan: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Write the model's ``model.json`` from what training left to serve (nothing without it).

    The served file is ``best.pt`` (a network) or ``classical.json`` (the classical
    learner); ``auto.json``, when training compared candidates, adds the comparison.
    Models trained on normalised bands record them (``band_stats``): serving reads the
    same bands and scales them the same way.

    Args:
        request: The training request.
        raster_path: The raster trained on (for folders: the image folder).
        stopped: How training ended.
        plan: The training plan (tiles per role, the tile size used...), kept in
            ``model.json`` (a cancelled run keeps the previous one).

    Returns:
        The description written, or None when there is nothing to serve yet.
    """
    folder = model_folder(request.name)
    auto = _read_json(folder / AUTO_FILE)
    served = str((auto or {}).get("checkpoint") or BEST)
    if served == CLASSICAL_FILE and (folder / CLASSICAL_FILE).is_file():
        facts = _classical_facts(folder / CLASSICAL_FILE)
    elif (folder / BEST).is_file():
        served, facts = BEST, _checkpoint_facts(folder / BEST)
    else:
        return None
    history = read_history(folder / HISTORY)
    if history is None and auto:  # the chosen candidate's epochs
        history = read_history(folder / CANDIDATES_DIR / str(auto.get("chosen")) / HISTORY)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    previous = read_info(folder) or {}
    plan = dict(plan or previous.get("plan") or {})

    def resolved(path: str | None) -> str | None:
        return str(Path(path).resolve()) if path else None

    info = {
        "name": request.name,
        "created": previous.get("created", now),
        "updated": now,
        "raster": None if request.from_folders else (
            resolved(raster_path) if request.raster else raster_path
        ),
        "labels": resolved(request.labels),
        "layer": request.layer,
        "class_field": request.class_field,
        "images": resolved(request.images),
        "masks": resolved(request.masks),
        "classes_file": resolved(request.classes),
        "example_image": plan.get("example_image"),
        "aoi": resolved(request.aoi),
        "background": request.background,
        "label_budget": request.label_budget,
        "tile_size": plan.get("tile_size", request.tile_size),
        "bands": request.bands,
        "resolution": request.resolution,
        "epochs": request.epochs,
        "epochs_run": len(history or []),
        "stopped": stopped,
        "plan": plan,
        **facts,
        "checkpoint": served,
    }
    if auto:
        # The candidates' files are deleted once the run ends: the comparison keeps
        # their scores, not their paths.
        comparison = [{k: v for k, v in c.items() if k != "artefact"}
                      for c in auto.get("comparison") or []]  # fmt: skip
        info["auto"] = {"chosen": auto.get("chosen"), "description": auto.get("description"),
                        "comparison": comparison}  # fmt: skip
        chosen = next((c for c in comparison if c.get("name") == auto.get("chosen")), {})
        info.setdefault("per_class_iou", chosen.get("iou") or {})
    weak = _read_json(folder / WEAK_LABELS_FILE)  # segment --fuse-land-cover reads it
    if weak:
        info["weak_labels"] = weak
    write_info(folder, info)
    return read_info(folder)


def _checkpoint_facts(best: Path) -> dict[str, Any]:
    """What ``model.json`` says about a network from its ``best.pt`` (metadata only)."""
    from rs_reasoner.models.checkpoint import load_checkpoint

    payload = load_checkpoint(best, map_location="cpu", mmap=True)  # metadata only
    metrics = payload.get("metrics") or {}
    suffix = "_teacher" if payload.get("weights_from") == "teacher" else ""
    data = payload.get("data") or {}
    facts = {
        "classes": list(payload.get("class_names") or []),
        "architecture": (payload.get("model_spec") or {}).get("arch"),
        "best_epoch": int(payload.get("epoch", -1)) + 1,
        "best_miou": metrics.get("miou" + suffix),
        "per_class_iou": dict(metrics.get("iou" + suffix) or {}),
    }
    if data.get("band_stats"):
        facts["band_stats"] = data["band_stats"]
    return facts


def _classical_facts(path: Path) -> dict[str, Any]:
    """What ``model.json`` says about a classical learner from its file."""
    doc = _read_json(path) or {}
    info = doc.get("info") or {}
    return {
        "classes": list(doc.get("class_names") or []),
        "architecture": "classical",
        "best_miou": info.get("val_miou"),
        "band_stats": doc.get("bands"),
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_history(path: Path) -> list[dict[str, Any]] | None:
    """The epoch entries of a ``history.json``, or None when missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    history = data.get("history") if isinstance(data, dict) else None
    return history if isinstance(history, list) else None

