"""Think2Seg-RS reasoning segmentation: LVLM prompter + frozen SAM, whole extent at once.

Flow for one extent: overview (extent resized to 840², as trained) → Qwen2.5-VL writes its
reasoning and a JSON list of boxes + two positive points → lenient parse (NMS, cap) →
map to extent pixels → SAM on full-resolution crops, one mask per object → union
(semantic-level) or instances → label/score/instance maps + the reasoning text.

The mask stage is SAM 2.1 (:mod:`.sam`, what Think2Seg-RS was trained and evaluated
with) or SAM 3's interactive head (:mod:`.sam3_masks`, same prompts and crops); the
prompter never sees which.

Limits: the prompter sees at most 840x840 pixels of the extent, so objects smaller than
about ``extent side / 840 * 10`` pixels are hard for it to see (choose a smaller extent
or a finer zoom for small targets); extents far from square are squeezed into the square
overview (the model was trained on square images), which degrades its boxes beyond about
3:1; SAM edges are native-resolution for objects up to ~730 px and about
``1.4 x object side / 1024`` px beyond (see :mod:`.sam`); at most ``MAX_OBJECTS`` objects.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from scipy.special import expit

from rs_reasoner.segmenters.base import SegmentationQuery, Segmenter, TileResult
from rs_reasoner.segmenters.hub_weights import DEFAULT_PROMPTER, DEFAULT_SAM_VARIANT, sam_weights
from rs_reasoner.segmenters.reasoning.geometry import ModelFrame, make_overview
from rs_reasoner.segmenters.reasoning.parser import ParsedAnswer, parse_answer
from rs_reasoner.segmenters.reasoning.prompter import (
    DEFAULT_MAX_NEW_TOKENS,
    GenerationStats,
    Prompter,
    QwenPrompter,
)
from rs_reasoner.segmenters.reasoning.prompter import prompter_weights as prompter_spec
from rs_reasoner.segmenters.reasoning.sam import (
    ObjectMask,
    SamRefiner,
    SamStats,
    build_sam2_model,
)
from rs_reasoner.segmenters.reasoning.sam3_masks import sam3_refiner, sam3_weights_path
from rs_reasoner.weights import resolve

log = logging.getLogger(__name__)

MaskStage = Literal["sam2", "sam3"]
#: The SAM that turns the prompter's boxes and points into masks.
MASK_STAGES: tuple[str, ...] = ("sam2", "sam3")
InstanceMode = Literal["auto", "union", "instances"]
INSTANCE_MODES: tuple[str, ...] = ("auto", "union", "instances")
#: ``auto`` merges objects into one semantic region when their masks overlap by more than
#: this fraction of the area they cover (the model drew one region with several prompts);
#: otherwise each object stays an instance.
AUTO_OVERLAP = 0.05


@dataclass
class RunStats:
    """What the last :meth:`ReasoningSegmenter.segment` call did and how long it took."""

    answer: str = ""
    parse_summary: str = ""
    objects: int = 0
    mode: str = ""
    overview_s: float = 0.0
    prompter: GenerationStats = field(default_factory=GenerationStats)
    sam: SamStats = field(default_factory=SamStats)
    sam_s: float = 0.0
    compose_s: float = 0.0
    total_s: float = 0.0


@dataclass
class Composed:
    """Per-pixel maps from the object masks."""

    labels: np.ndarray
    scores: np.ndarray
    instances: np.ndarray | None
    class_names: list[str]
    mode: str


def compose_masks(
    masks: Sequence[ObjectMask],
    names: Sequence[str],
    shape: tuple[int, int],
    valid: np.ndarray,
    mode: InstanceMode = "auto",
) -> Composed:
    """Paint object masks into extent-sized label, score and instance maps.

    A pixel's score is SAM's mask probability (sigmoid of the logit), so the pipeline's
    default threshold 0.5 keeps exactly SAM's mask and higher thresholds tighten it.
    Where masks overlap, the more confident object wins the pixel.

    Args:
        masks: One mask per object (its window and logits).
        names: Each object's label (class name).
        shape: Extent (H, W).
        valid: (H, W) bool; masks are cut to it.
        mode: ``union``, ``instances`` or ``auto`` (see ``AUTO_OVERLAP``).

    Returns:
        The maps, the class names in label order and the mode actually used.
    """
    class_names = list(dict.fromkeys(names))
    index = {name: k + 1 for k, name in enumerate(class_names)}
    labels = np.zeros(shape, np.int32)
    scores = np.zeros(shape, np.float32)
    instances = np.zeros(shape, np.int32)
    overlap = covered = 0
    for k, (mask, name) in enumerate(zip(masks, names, strict=True), start=1):
        sl = mask.window.slices
        inside = (mask.logits > 0) & valid[sl]
        if not inside.any():
            continue
        prob = expit(mask.logits.astype(np.float32, copy=False))
        taken = instances[sl] > 0
        overlap += int(np.count_nonzero(inside & taken))
        covered += int(np.count_nonzero(inside & ~taken))
        wins = inside & (prob > scores[sl])
        scores[sl][wins] = prob[wins]
        labels[sl][wins] = index[name]
        instances[sl][wins] = k
    if mode == "auto":
        mode = "union" if overlap > AUTO_OVERLAP * max(covered, 1) else "instances"
    if mode == "union":
        return Composed(labels, scores, None, class_names, mode)
    # Number the objects that kept pixels 1..n (an object can lose all its pixels to more
    # confident ones). Checked inside each window only: extents reach 10^8 pixels.
    present = np.zeros(len(masks) + 1, bool)
    for k, mask in enumerate(masks, start=1):
        present[k] = bool((instances[mask.window.slices] == k).any())
    if not present[1:].all() and present.any():
        lut = np.zeros(len(masks) + 1, np.int32)
        lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
        rows = slice(min(m.window.row0 for m in masks), max(m.window.row1 for m in masks))
        cols = slice(min(m.window.col0 for m in masks), max(m.window.col1 for m in masks))
        instances[rows, cols] = lut[instances[rows, cols]]
    return Composed(labels, scores, instances, class_names, mode)


def reasoning_text(parsed: ParsedAnswer) -> str:
    """The text shown with the result: the reasoning, plus why nothing came out if so."""
    parts = [parsed.think] if parsed.think else []
    if parsed.no_target:
        why = parsed.notes[-1] if parsed.notes else "no object in the answer"
        parts.append(f"No target found ({why}).")
    return "\n\n".join(parts)


class ReasoningSegmenter(Segmenter):
    """Segments what a sentence describes, with the model's reasoning (Think2Seg-RS).

    The registry serves it with ``whole_extent`` set: it reads the whole extent at once.

    Args:
        prompter: A built prompter (writes the reasoning and the object prompts).
        sam: A built SAM refiner.
        device: Torch device the models are on.
        instance_mode: ``union`` (semantic: one region per label), ``instances`` (one
            polygon set per object) or ``auto`` (instances unless the masks overlap).

    :meth:`from_pretrained` resolves the weights and builds both models.
    """

    def __init__(
        self,
        prompter: Prompter,
        sam: SamRefiner,
        device: str = "cpu",
        instance_mode: InstanceMode = "auto",
    ) -> None:
        if instance_mode not in INSTANCE_MODES:
            raise ValueError(f"instance_mode must be one of {INSTANCE_MODES}")
        self.device = device
        self.instance_mode: InstanceMode = instance_mode
        self.prompter = prompter
        self.sam = sam
        self.last_run = RunStats()
        self._lock = threading.Lock()  # the SAM predictor holds per-image state

    @classmethod
    def from_pretrained(
        cls,
        device: str = "cpu",
        instance_mode: InstanceMode = "auto",
        prompter_weights: str = DEFAULT_PROMPTER,
        sam_variant: str = DEFAULT_SAM_VARIANT,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        allow_download: bool = False,
        model_name: str = "think2seg-rs",
        mask_stage: MaskStage = "sam2",
    ) -> ReasoningSegmenter:
        """Load the prompter and the SAM from local weights (the registry's loader).

        Args:
            device: Torch device.
            instance_mode: See the class.
            prompter_weights: Key of ``PROMPTER_WEIGHTS`` (Think2Seg-RS-3B by default).
            sam_variant: SAM 2.1 size (``small`` by default, the paper's choice); unused
                with SAM 3.
            max_new_tokens: Prompter generation budget.
            allow_download: Fetch missing weights from the Hub (never during a job by
                default).
            model_name: Registered name, for error messages.
            mask_stage: ``sam2`` (SAM 2.1) or ``sam3`` (SAM 3's interactive head,
                ``facebook/sam3``).

        Raises:
            MissingWeightsError: Weights are not available locally (checked for both
                models before either is loaded).
        """
        if instance_mode not in INSTANCE_MODES:
            raise ValueError(f"instance_mode must be one of {INSTANCE_MODES}")
        if mask_stage not in MASK_STAGES:
            raise ValueError(f"mask_stage must be one of {MASK_STAGES}")
        # Resolve every missing weight before loading anything: a missing file should
        # fail in a second, not after loading a 3B model.
        prompter_path = resolve(prompter_spec(prompter_weights), model_name, allow_download)
        if mask_stage == "sam3":
            sam = sam3_refiner(sam3_weights_path(model_name, allow_download), device)
        else:
            sam_path = resolve(sam_weights(sam_variant), model_name, allow_download)
            sam = SamRefiner.from_model(build_sam2_model(sam_variant, str(sam_path), device))
        prompter = QwenPrompter.from_path(
            prompter_path, device=device, max_new_tokens=max_new_tokens
        )
        return cls(prompter, sam, device=device, instance_mode=instance_mode)

    def segment(
        self, image: np.ndarray, valid: np.ndarray, query: SegmentationQuery
    ) -> TileResult:
        """Segment the whole extent for a sentence query.

        Args:
            image: (H, W, 3) uint8 RGB extent.
            valid: (H, W) bool, False on NoData.
            query: The query (its text is what the prompter reads).

        Returns:
            Labels (one class per object name, default the query), SAM probabilities as
            scores, instance ids unless unioned, and the reasoning as ``text``.
        """
        with self._lock:
            return self._segment(image, np.asarray(valid, bool), query)

    def _segment(
        self, image: np.ndarray, valid: np.ndarray, query: SegmentationQuery
    ) -> TileResult:
        start = time.perf_counter()
        height, width = image.shape[:2]
        run = RunStats()
        self.last_run = run
        if not valid.any():
            return _empty((height, width), query.text, "The extent holds only NoData pixels.")

        overview = make_overview(image, valid)
        run.overview_s = time.perf_counter() - start
        answer = self.prompter.generate(overview, query.text)
        run.answer, run.prompter = answer.text, answer.stats
        log.info("reasoning answer for %r: %s", query.text, answer.text)
        if answer.stats.hit_budget:
            log.warning("the answer hit the %d-token budget", answer.stats.new_tokens)

        parsed = parse_answer(answer.text)
        run.parse_summary = parsed.summary()
        run.objects = len(parsed.objects)
        log.info("parsed answer: %s", run.parse_summary)
        text = reasoning_text(parsed)
        notes = (f"raw answer: {answer.text}", f"parsed answer: {run.parse_summary}")
        if parsed.no_target:
            run.total_s = time.perf_counter() - start
            return replace(_empty((height, width), query.text, text), notes=notes)

        frame = ModelFrame(width=width, height=height)
        prompts = [frame.prompt_to_pixels(o) for o in parsed.objects]
        t = time.perf_counter()
        masks = self.sam.predict(image, prompts)
        run.sam_s = time.perf_counter() - t
        run.sam = self.sam.last_stats

        t = time.perf_counter()
        names = [o.name or query.text for o in parsed.objects]
        # A per-request choice wins if the request options carry one.
        mode = getattr(query.options, "instance_mode", None)
        mode = mode if mode in INSTANCE_MODES else self.instance_mode
        out = compose_masks(masks, names, (height, width), valid, mode)
        run.mode = out.mode
        run.compose_s = time.perf_counter() - t
        run.total_s = time.perf_counter() - start
        return TileResult(
            labels=out.labels,
            scores=out.scores,
            class_names=out.class_names,
            instances=out.instances,
            text=text,
            notes=notes,
        )

    def close(self) -> None:
        """Release both models and cached GPU memory."""
        self.prompter.close()
        self.sam.close()
        if str(self.device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _empty(shape: tuple[int, int], label: str, text: str) -> TileResult:
    return TileResult(
        labels=np.zeros(shape, np.int32),
        scores=np.zeros(shape, np.float32),
        class_names=[label],
        text=text,
    )


def think2seg_rs_7b(device: str = "cpu") -> ReasoningSegmenter:
    """The loader of ``think2seg-rs-7b``: the 7B prompter variant (registry loaders get
    only ``device``)."""
    return ReasoningSegmenter.from_pretrained(
        device=device, prompter_weights="think2seg-rs-7b", model_name="think2seg-rs-7b"
    )


def think2seg_sam3(device: str = "cpu") -> ReasoningSegmenter:
    """The loader of ``think2seg-sam3``: the 3B prompter with SAM 3 as the mask stage."""
    return ReasoningSegmenter.from_pretrained(
        device=device, mask_stage="sam3", model_name="think2seg-sam3"
    )
