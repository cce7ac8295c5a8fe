"""One ``POST /train`` request of kind ``reasoner``: cheap checks at submission, then the
run (:func:`rs_reasoner.reasoner_run.run_reasoner_training`) in the job worker.

The checks read metadata only (the raster's header, the layer's schema, the query column,
the weights' presence in the cache), never torch or the training package, so a bad
request is a 4xx at once; what only the examples themselves can tell (polygons outside
the raster, empty geometries) fails the job with one clear error when it starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.schemas import ReasonerTrainRequest
from rs_reasoner.segmenters.reasoning.template import MAX_QUERY_CHARS
from rs_reasoner.trained_models import check_name
from rs_reasoner.vector.layers import polygon_layer_info

ProgressFn = Callable[[str, float, "str | None"], None]
NoteFn = Callable[[str], None]



def check_reasoner_request(
    request: ReasonerTrainRequest, raster_path: str | None, reserved: set[str] | None = None
) -> None:
    """Cheap checks of a prompter fine-tuning request.

    Args:
        request: The request.
        raster_path: The raster (the request's path or an upload's file); None for a
            folder of examples.
        reserved: Names of built-in models (default: the registry's).

    Raises:
        RsReasonerError: What is wrong and how to fix it.
    """
    if reserved is None:
        from rs_reasoner.segmenters import registry

        reserved = registry.registered_names()
    check_name(request.name, reserved)
    examples = Path(request.examples)
    if not examples.exists():
        raise InvalidRequestError(
            f"The examples do not exist: {request.examples}",
            "Give a polygon layer (with a raster) or an EarthReason-style folder.",
        )
    if raster_path is None:
        _check_folder(request, examples)
    else:
        from rs_reasoner.raster import open_raster

        open_raster(raster_path).close()
        _check_layer(request)
    _check_weights(request)


def _check_folder(request: ReasonerTrainRequest, folder: Path) -> None:
    if not folder.is_dir():
        raise InvalidRequestError(
            f"{request.examples} is a file, and examples from a layer need the raster the "
            "polygons lie on.",
            "Give 'raster' (or 'upload_id'), or an EarthReason-style folder of examples.",
        )
    if request.layer or request.query_field or request.query:
        raise InvalidRequestError(
            "A folder of examples carries its own questions (QAs/*.json); layer, query "
            "field and query apply to a polygon layer.",
            "Leave them out, or give a polygon layer with its raster.",
        )


def _check_layer(request: ReasonerTrainRequest) -> None:
    """The layer is there with polygon features and the query field (its values within
    the prompt's length), or one query is given."""
    import pyogrio

    path = request.examples
    if Path(path).is_dir():
        raise InvalidRequestError(
            f"{path} is a folder; examples over a raster are a polygon layer.",
            "Give a GeoPackage or Shapefile, or leave the raster out for an "
            "EarthReason-style folder.",
        )
    if (request.query_field is None) == (request.query is None):
        raise InvalidRequestError(
            "Give either a query field (a question per polygon) or one query for the "
            "whole examples layer.",
            "Set 'query_field' to the field holding the questions, or 'query' to the text.",
        )
    info = polygon_layer_info(
        path, request.layer, "examples layer", "Draw the polygons that answer the query first."
    )
    if request.query is not None:
        _check_query(request.query, "the query")
        return
    fields = [str(f) for f in info.get("fields", [])]
    if request.query_field not in fields:
        close = [f for f in fields if f.lower() == str(request.query_field).lower()]
        raise InvalidRequestError(
            f"The examples layer {path} has no field {request.query_field!r}. Available "
            f"fields: {', '.join(fields) if fields else '(none)'}.",
            f"Did you mean {close[0]!r}?" if close else "Choose the field holding the question.",
        )
    table = pyogrio.read_dataframe(
        path, layer=request.layer, columns=[request.query_field], read_geometry=False
    )
    for row, value in enumerate(table[request.query_field]):
        _check_query(value, f"feature {row} ({request.query_field!r})")


def _check_query(value: object, where: str) -> None:
    text = " ".join(str(value).split()) if value is not None else ""
    if not text or text.lower() in ("nan", "none"):
        raise InvalidRequestError(
            f"The question of {where} is empty.", "Give every example polygon a question."
        )
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidRequestError(
            f"The question of {where} has {len(text)} characters; the prompter's context "
            f"takes at most {MAX_QUERY_CHARS}.",
            "Shorten the question (it would be cut, and the model trained on another one).",
        )


def _check_weights(request: ReasonerTrainRequest) -> None:
    """The base prompter and the reward's SAM 2.1 are on this machine (no download)."""
    from rs_reasoner.segmenters.hub_weights import (
        DEFAULT_PROMPTER,
        DEFAULT_SAM_VARIANT,
        PROMPTER_WEIGHTS,
        sam_variant,
        sam_weights,
    )

    base = request.base_prompter or DEFAULT_PROMPTER
    if not Path(base).expanduser().is_dir():
        if base not in PROMPTER_WEIGHTS:
            raise InvalidRequestError(
                f"Unknown base prompter {base!r}: neither a folder nor a prompter's name.",
                f"Give a local snapshot folder or one of: {', '.join(PROMPTER_WEIGHTS)}.",
            )
        _resolve(PROMPTER_WEIGHTS[base])
    variant = request.sam_variant or DEFAULT_SAM_VARIANT
    try:
        sam_variant(variant)
    except ValueError as exc:
        raise InvalidRequestError(f"The SAM 2.1 variant is not known: {exc}.") from None
    if request.sam_checkpoint is not None:
        if not Path(request.sam_checkpoint).is_file():
            raise InvalidRequestError(
                f"The SAM 2.1 checkpoint does not exist: {request.sam_checkpoint}",
                "Give the path of a .pt file, or leave it out to use the cached weights.",
            )
    else:
        _resolve(sam_weights(variant))


def _resolve(spec: Any) -> None:
    """The weights are cached; else the error names the built-in model whose
    ``models pull`` fetches them (the default reasoning model when none lists them)."""
    from rs_reasoner.segmenters import registry
    from rs_reasoner.weights import resolve

    owner = next((s.name for s in registry.specs() if spec in s.weights), "think2seg-rs")
    resolve(spec, owner)


def run_reasoner_request(
    request: ReasonerTrainRequest,
    raster_path: str | None,
    *,
    device: str,
    progress: ProgressFn | None = None,
    note: NoteFn | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Train (or resume) and register the fine-tuned prompter ``request.name``.

    Args:
        request: The request.
        raster_path: The raster, or None for a folder of examples.
        device: Torch device (resolved).
        progress: ``progress(stage, fraction, None)``; the lines go to ``note``.
        note: Receives one line per reported event (each step's reward, parse failures,
            held-out IoU).
        cancel: Stops after the current step (the adapter so far is registered, then
            ``JobCancelled``).

    Returns:
        The job's result: the model, its queries, steps, held-out IoU, adapter folder.
    """
    from rs_reasoner.reasoner_run import run_reasoner_training
    from rs_reasoner.trained_models import model_folder

    report = progress or (lambda stage, fraction, message: None)

    def relay(stage: str, fraction: float, message: str | None) -> None:
        report(stage, fraction, None)
        if message and note is not None:
            note(f"{stage}: {message}")

    kwargs = request.trainer_arguments()
    if raster_path is not None:
        kwargs["raster"] = raster_path
    info = run_reasoner_training(
        request.name, request.examples, progress=relay, cancel=cancel, device=device, **kwargs
    )
    before, after = info.get("heldout_iou_before"), info.get("heldout_iou_after")
    if note is not None:
        scores = ""
        if isinstance(before, int | float) and isinstance(after, int | float):
            scores = f"; held-out mean IoU {before:.3f} -> {after:.3f}"
        note(f"model '{request.name}' registered ({info.get('stopped')}, "
             f"{info.get('steps')} steps{scores})")  # fmt: skip
    return {
        "model": request.name,
        "kind": "reasoner",
        "classes": list(info.get("classes") or []),
        "steps": info.get("steps"),
        "stopped": info.get("stopped"),
        "heldout_iou_before": before,
        "heldout_iou_after": after,
        "checkpoint": str(model_folder(request.name) / str(info.get("checkpoint"))),
    }
