"""``train_reasoner``: examples + base prompter + frozen SAM 2.1 → GRPO → LoRA adapter.

What ``rs-reasoner train-reasoner`` runs through the ``rs_reasoner.reasoner_trainers``
entry point (the backend never imports this package). The base prompter is a key of
``PROMPTER_WEIGHTS`` (resolved from the local cache) or a local snapshot folder; SAM 2.1
is a variant from the cache or a local checkpoint. On CUDA the prompter trains in bf16
with gradient checkpointing.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import torch

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.segmenters.hub_weights import DEFAULT_PROMPTER, DEFAULT_SAM_VARIANT
from rs_reasoner.segmenters.reasoning.adapter import base_prompter_path, load_sam
from rs_reasoner_training.grpo.examples import (
    HOLDOUT_FRACTION,
    NEGATIVES,
    Example,
    examples_from_folder,
    examples_from_layer,
)
from rs_reasoner_training.grpo.loop import GrpoResult, GrpoRun, StageFn
from rs_reasoner_training.grpo.options import GrpoOptions
from rs_reasoner_training.grpo.reward import SamMaskStage


def load_examples(
    examples: str | os.PathLike[str],
    raster: str | os.PathLike[str] | None,
    **kwargs: Any,
) -> list[Example]:
    """Examples from a polygon layer over ``raster`` or, without a raster, from an
    EarthReason-style folder."""
    if raster is None:
        if not Path(examples).is_dir():
            raise InvalidRequestError(
                f"{examples} is not a folder of examples.",
                "Give --raster with a polygon layer, or an EarthReason-style folder.",
            )
        return examples_from_folder(examples)
    return examples_from_layer(raster, examples, **kwargs)


def train_reasoner(
    examples: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    raster: str | os.PathLike[str] | None = None,
    layer: str | None = None,
    query_field: str | None = None,
    query: str | None = None,
    bands: list[int] | None = None,
    holdout_fraction: float = HOLDOUT_FRACTION,
    negatives: float = NEGATIVES,
    base_prompter: str = DEFAULT_PROMPTER,
    sam_variant: str = DEFAULT_SAM_VARIANT,
    sam_checkpoint: str | None = None,
    device: str = "cpu",
    callback: StageFn | None = None,
    cancel: threading.Event | None = None,
    **options: Any,
) -> GrpoResult:
    """Fine-tune the prompter on examples (or resume the run in ``output_dir``).

    Args:
        examples: Polygon layer (with ``raster``) or EarthReason-style folder.
        output_dir: The run's folder (resume state, adapters).
        raster, layer, query_field, query, bands, holdout_fraction, negatives: How the
            examples are built (:func:`examples_from_layer`).
        base_prompter: ``PROMPTER_WEIGHTS`` key or local snapshot folder.
        sam_variant, sam_checkpoint: The frozen SAM 2.1 of the reward.
        device: Torch device.
        callback: ``callback(stage, fraction, message)``.
        cancel: Stop event.
        **options: :class:`GrpoOptions` fields.
    """
    opts = GrpoOptions.from_mapping(options)
    report = callback or (lambda stage, fraction, message: None)
    report("preparing", 0.0, "reading the examples")
    kwargs = {"layer": layer, "query_field": query_field, "query": query, "bands": bands,
              "holdout_fraction": holdout_fraction, "negatives": negatives, "seed": opts.seed}
    data = load_examples(examples, raster, **(kwargs if raster is not None else {}))
    n_train = sum(not e.heldout for e in data)
    report("preparing", 0.0, f"{n_train} training and {len(data) - n_train} held-out examples")
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    path = base_prompter_path(base_prompter, "train-reasoner")
    cuda = device.startswith("cuda")
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        str(path), dtype=torch.bfloat16 if cuda else torch.float32, local_files_only=True
    ).to(device)
    processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
    sam = {"variant": sam_variant, "checkpoint": sam_checkpoint}
    stage = SamMaskStage(load_sam(sam, device, "train-reasoner"))
    meta = {
        "base_prompter": str(base_prompter),
        "sam": sam,
        "queries": sorted({e.query for e in data}),
        "examples": str(examples),
        "raster": str(raster) if raster is not None else None,
    }
    run = GrpoRun(model, processor, data, stage, Path(output_dir), opts, meta, report, cancel)
    return run.run()


class ReasonerTrainer:
    """This package as the backend's reasoner trainer (entry point
    ``rs_reasoner.reasoner_trainers``)."""

    def option_names(self) -> frozenset[str]:
        """:class:`GrpoOptions` fields."""
        return GrpoOptions.names()

    def train_reasoner(self, *args: Any, **kwargs: Any) -> GrpoResult:
        """:func:`train_reasoner`."""
        return train_reasoner(*args, **kwargs)


#: The entry point's object.
TRAINER = ReasonerTrainer()
