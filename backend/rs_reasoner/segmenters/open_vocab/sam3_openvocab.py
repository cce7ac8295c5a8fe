"""Open-vocabulary segmentation with SAM 3 concept prompts (SegEarth-OV3 style).

SAM 3 (transformers' ``Sam3Model``) answers a short text concept with three things:
instance masks with scores from its DETR-style decoder, a semantic map from its
segmentation head, and a presence score saying whether the concept is in the image at
all. Per window of the model's native input (1008 px for ``facebook/sam3``) and per
class, this segmenter:

1. **aggregates instances**: the class map from the instance head is, per pixel, the
   highest score over the instances whose mask covers it (mask probability at least
   ``mask_threshold``) and whose score (decoder score × presence) reaches
   ``instance_threshold``;
2. **fuses the heads**: the class probability is the maximum of that map and the
   semantic head's probability (instances bring detail, the semantic head coverage);
3. **drops absent classes**: a class whose presence score is below
   ``presence_threshold`` gets probability 0 in that window.

A pixel takes the most probable class when that probability reaches
``mask_threshold``, else background; each kept instance whose mask covers a pixel of
its own class labels that pixel with its instance id, so every object becomes its own
polygon. Windows overlap; where they do, the higher probability wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rs_reasoner.device import autocast
from rs_reasoner.segmenters.base import SegmentationQuery, Segmenter, TileResult
from rs_reasoner.segmenters.hub_weights import SAM3_WEIGHTS
from rs_reasoner.segmenters.open_vocab.decision import require_classes
from rs_reasoner.segmenters.sliding_windows import window_starts
from rs_reasoner.weights import resolve

#: SAM 3's native input side (``facebook/sam3``'s image processor and ViT).
SAM3_INPUT_SIZE = 1008


@dataclass(frozen=True)
class Sam3Settings:
    """Inference settings of :class:`Sam3OpenVocabSegmenter`.

    Attributes:
        instance_threshold: Minimum instance score (decoder score × presence) to keep.
        mask_threshold: Minimum fused probability for a pixel to take a class.
        presence_threshold: Classes whose presence score is below this are dropped.
        overlap: Fraction of a window shared with its neighbour.
    """

    instance_threshold: float = 0.3
    mask_threshold: float = 0.5
    presence_threshold: float = 0.1
    overlap: float = 0.125

    def __post_init__(self) -> None:
        for name in ("instance_threshold", "mask_threshold", "presence_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        if not 0 <= self.overlap < 1:
            raise ValueError("overlap must be in [0, 1)")


@dataclass
class _ClassMaps:
    """One class in one window: fused probability and the kept instances."""

    fused: torch.Tensor  # (h, w)
    masks: torch.Tensor  # (n, h, w) probabilities
    scores: torch.Tensor  # (n,)


class Sam3OpenVocabSegmenter(Segmenter):
    """Class names → SAM 3 concept prompts → per-pixel labels, scores and instances.

    Args:
        model: A built ``transformers.Sam3Model`` (eval mode).
        processor: Its ``Sam3Processor`` (image processor + CLIP tokenizer).
        device: Torch device; the model is moved there.
        **settings: Fields of :class:`Sam3Settings`.
    """

    def __init__(self, model: Any, processor: Any, device: str = "cpu", **settings: Any) -> None:
        self.settings = Sam3Settings(**settings)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.input_size = int(processor.image_processor.size["height"])

    @classmethod
    def from_pretrained(
        cls, device: str = "cpu", allow_download: bool = False, **settings: Any
    ) -> Sam3OpenVocabSegmenter:
        """Load ``facebook/sam3`` (transformers files) from the cache (the registry's loader).

        Raises:
            MissingWeightsError: The weights are not on this machine.
        """
        Sam3Settings(**settings)  # checked before loading anything
        path = resolve(SAM3_WEIGHTS, "sam3-openvocab", allow_download=allow_download)
        return cls.from_path(path, device=device, **settings)

    @classmethod
    def from_path(
        cls, path: str | Path, device: str = "cpu", **settings: Any
    ) -> Sam3OpenVocabSegmenter:
        """Load from a folder in ``facebook/sam3``'s layout."""
        from transformers import Sam3Model, Sam3Processor

        model = Sam3Model.from_pretrained(str(path), local_files_only=True)
        processor = Sam3Processor.from_pretrained(str(path), local_files_only=True)
        return cls(model, processor, device, **settings)

    # ------------------------------------------------------------------ inference

    def _text_inputs(self, classes: Sequence[Sequence[str]]) -> dict[str, torch.Tensor]:
        # The first synonym is the concept prompt; SAM 3 takes short noun phrases.
        prompts = [syn[0] for syn in classes]
        tok = self.processor.tokenizer(prompts, padding="max_length", truncation=True,
                                       max_length=self.model.config.text_config
                                       .max_position_embeddings, return_tensors="pt")
        return {"input_ids": tok["input_ids"].to(self.device),
                "attention_mask": tok["attention_mask"].to(self.device)}

    def _window(self, crop: np.ndarray, text: dict[str, torch.Tensor]) -> list[_ClassMaps]:
        s = self.settings
        h, w = crop.shape[:2]
        pixels = self.processor.image_processor(images=[crop], return_tensors="pt")
        pixel_values = pixels["pixel_values"].to(self.device)
        n = text["input_ids"].shape[0]
        with autocast(self.device):
            vision = self.model.get_vision_features(pixel_values=pixel_values)
            # One image encoding serves every class prompt.
            for key in ("fpn_hidden_states", "fpn_position_encoding"):
                setattr(vision, key, tuple(t.expand(n, *t.shape[1:]) for t in getattr(vision, key)))
            out = self.model(vision_embeds=vision, **text)
        presence = out.presence_logits.float().sigmoid()[:, 0]  # (n,)
        inst_scores = out.pred_logits.float().sigmoid() * presence[:, None]  # (n, q)
        masks = F.interpolate(out.pred_masks.float(), size=(h, w), mode="bilinear").sigmoid()
        semantic = F.interpolate(out.semantic_seg.float(), size=(h, w), mode="bilinear")
        semantic = semantic.sigmoid()[:, 0]
        result = []
        for c in range(n):
            keep = inst_scores[c] >= s.instance_threshold
            kept_masks, kept_scores = masks[c][keep], inst_scores[c][keep]
            fused = semantic[c]
            if kept_scores.numel():
                binary = (kept_masks > s.mask_threshold).float()
                fused = torch.maximum(fused, (kept_scores[:, None, None] * binary).amax(0))
            if presence[c] < s.presence_threshold:
                fused = torch.zeros_like(fused)
                kept_masks, kept_scores = kept_masks[:0], kept_scores[:0]
            result.append(_ClassMaps(fused, kept_masks, kept_scores))
        return result

    def segment(self, image: np.ndarray, valid: np.ndarray, query: SegmentationQuery) -> TileResult:
        """Label each pixel with a class or background, and each object with an instance id."""
        require_classes(query)
        if self.model is None:
            raise RuntimeError("the segmenter was closed")
        s = self.settings
        h, w = valid.shape
        n = len(query.classes)
        side = self.input_size
        stride = max(1, round(side * (1 - s.overlap)))
        prob = torch.zeros(n, h, w)
        inst_score = torch.zeros(h, w)
        inst_id = torch.zeros(h, w, dtype=torch.int32)
        inst_class = torch.zeros(h, w, dtype=torch.int32)
        next_id = 1
        with torch.inference_mode():
            text = self._text_inputs(query.classes)
            for y in window_starts(h, side, stride):
                for x in window_starts(w, side, stride):
                    ys, xs = slice(y, min(y + side, h)), slice(x, min(x + side, w))
                    maps = self._window(np.ascontiguousarray(image[ys, xs]), text)
                    region = prob[:, ys, xs]
                    for c, m in enumerate(maps):
                        region[c] = torch.maximum(region[c], m.fused.cpu())
                        for mask, score in zip(m.masks.cpu(), m.scores.cpu(), strict=True):
                            better = (mask > s.mask_threshold) & (score > inst_score[ys, xs])
                            inst_score[ys, xs][better] = score
                            inst_id[ys, xs][better] = next_id
                            inst_class[ys, xs][better] = c + 1
                            next_id += 1
        best, cls = prob.max(0)
        labels = torch.where(best >= s.mask_threshold, cls + 1, 0).int()
        scores = torch.where(labels > 0, best, 1 - best)
        # An instance labels only pixels that ended up with its own class.
        instances = torch.where((inst_class == labels) & (labels > 0), inst_id, 0)
        mask = torch.from_numpy(np.ascontiguousarray(valid))
        return TileResult(
            labels=torch.where(mask, labels, 0).numpy().astype(np.int32),
            scores=torch.where(mask, scores, 0.0).numpy().astype(np.float32),
            class_names=[syn[0] for syn in query.classes],
            instances=_renumber(torch.where(mask, instances, 0).numpy()),
        )

    def close(self) -> None:
        """Drop the model and release GPU memory."""
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _renumber(ids: np.ndarray) -> np.ndarray:
    """Instance ids 1..k for the instances still present (0 stays none)."""
    present, inverse = np.unique(ids, return_inverse=True)
    out = inverse.reshape(ids.shape).astype(np.int32)
    return out if present[0] == 0 else out + 1
