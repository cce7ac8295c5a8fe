"""A prompter fine-tuned here (``rs-reasoner train-reasoner``): base model + LoRA adapter.

Layout in the model's folder (``<models dir>/<name>``): ``adapter-<step>/`` folders, each
PEFT's ``adapter_config.json`` + ``adapter_model.safetensors`` and ``reasoner.json``
(written last, so its presence marks a complete folder: the base prompter, the SAM 2.1
used for the reward, the training options, held-out scores); ``model.json`` has
``kind: reasoner-adapter`` and names the served folder in ``checkpoint``.

Serving (:func:`load_adapter_segmenter`): the base prompter is loaded as the built-in
reasoning model loads it (a key of ``PROMPTER_WEIGHTS`` resolved from the local cache, or
a local snapshot folder), the adapter is applied with PEFT and merged into the weights
(no LoRA overhead per token), and SAM 2.1 is the one the reward used. Nothing here
imports torch until a model is loaded.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.reasoning.template import MODEL_SIZE
from rs_reasoner.segmenters.spec import ModelSpec
from rs_reasoner.trained_models import TRAINED_TAG, TrainedModel

#: ``model.json`` ``kind`` of a fine-tuned prompter.
ADAPTER_KIND = "reasoner-adapter"
#: File in each adapter folder describing it; written last (present = complete).
ADAPTER_META = "reasoner.json"
ADAPTER_PREFIX = "adapter-"


def adapter_dir_name(step: int) -> str:
    """Folder name of the adapter after ``step`` optimizer steps."""
    return f"{ADAPTER_PREFIX}{step:06d}"


def newest_adapter(folder: Path) -> Path | None:
    """The complete adapter folder with the most steps, or None."""
    found = sorted(p for p in folder.glob(f"{ADAPTER_PREFIX}*") if (p / ADAPTER_META).is_file())
    return found[-1] if found else None


def read_adapter_meta(adapter: Path) -> dict[str, Any]:
    """``reasoner.json`` of an adapter folder."""
    return json.loads((adapter / ADAPTER_META).read_text(encoding="utf-8"))


def base_prompter_path(base: str, model_name: str) -> Path:
    """The base prompter's snapshot folder: a local folder, or a ``PROMPTER_WEIGHTS`` key
    resolved from the local cache.

    Raises:
        MissingWeightsError: The key's snapshot is not on this machine.
        ValueError: Neither a folder nor a known key.
    """
    path = Path(base).expanduser()
    if path.is_dir():
        return path
    from rs_reasoner.segmenters.reasoning.prompter import prompter_weights
    from rs_reasoner.weights import resolve

    return resolve(prompter_weights(base), model_name)


def load_sam(sam: dict[str, Any], device: str, model_name: str) -> Any:
    """The SAM 2.1 an adapter was trained with (a local checkpoint, or its variant's
    weights from the cache)."""
    from rs_reasoner.segmenters.reasoning.sam import SamRefiner, build_sam2_model

    variant = str(sam.get("variant") or "small")
    checkpoint = sam.get("checkpoint")
    if checkpoint:
        return SamRefiner.from_model(build_sam2_model(variant, str(checkpoint), device))
    return SamRefiner.load(variant, device=device, model_name=model_name)


def load_adapter_segmenter(
    checkpoint: str, device: str = "cpu", name: str = "fine-tuned prompter"
) -> Any:
    """The registry's loader: base prompter + adapter (merged) + SAM, as a
    :class:`ReasoningSegmenter`.

    Args:
        checkpoint: The adapter folder.
        device: Torch device.
        name: The model's name (for messages).
    """
    from peft import PeftModel

    from rs_reasoner.segmenters.reasoning.prompter import QwenPrompter
    from rs_reasoner.segmenters.reasoning.segmenter import ReasoningSegmenter

    folder = Path(checkpoint)
    meta = read_adapter_meta(folder)
    base = base_prompter_path(str(meta["base_prompter"]), name)
    sam = load_sam(dict(meta.get("sam") or {}), device, name)
    prompter = QwenPrompter.from_path(base, device=device)
    merged = PeftModel.from_pretrained(prompter.model, str(folder)).merge_and_unload()
    prompter.model = merged.eval()
    return ReasoningSegmenter(prompter, sam, device=device)


def adapter_model_spec(model: TrainedModel) -> ModelSpec:
    """The registry's spec of a fine-tuned prompter in the models folder."""
    info = model.info
    before, after = info.get("heldout_iou_before"), info.get("heldout_iou_after")
    text = f"Think2Seg-RS prompter fine-tuned here (GRPO) on {', '.join(model.classes)}"
    if isinstance(before, int | float) and isinstance(after, int | float):
        text += f"; held-out mean IoU {before:.3f} → {after:.3f}"
    return ModelSpec(
        name=model.name,
        modes=(Mode.reasoning,),
        description=text + ".",
        factory=functools.partial(
            load_adapter_segmenter, checkpoint=str(model.folder / info["checkpoint"]),
            name=model.name,
        ),  # fmt: skip
        tags=(TRAINED_TAG, ADAPTER_KIND),
        whole_extent=True,
        input_size=MODEL_SIZE,
    )
