"""The reward: IoU of the frozen mask stage's mask with the target, as Think2Seg-RS.

Rules (the published reward):

* The completion is read by the serving parser (:func:`parse_answer`); its objects are
  mapped from the 840² frame to the example's pixels and drawn by the mask stage (the
  frozen SAM 2.1 in real runs); reward = IoU of the union of the masks with the target.
* A completion with nothing usable and no explicit empty list is **unparseable**:
  reward 0, counted as a parse failure.
* Negative examples (empty target, "no target"): reward 1 for an explicit empty list,
  0 for anything else (objects, or an unparseable answer).
* A positive example answered with an empty list gets 0 (IoU of nothing with something).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rs_reasoner.segmenters.reasoning.geometry import ModelFrame
from rs_reasoner.segmenters.reasoning.parser import ParsedAnswer, parse_answer


class MaskStage(Protocol):
    """Draws the mask of parsed prompts on an example's image (frozen; never trained)."""

    def mask(self, image: np.ndarray, valid: np.ndarray, parsed: ParsedAnswer) -> np.ndarray:
        """(H, W) bool mask of the answer's objects on ``image`` (H, W, 3 uint8)."""
        ...


class SamMaskStage:
    """The serving path's SAM 2.1 (:class:`SamRefiner`): union of the object masks.

    Args:
        sam: A built ``SamRefiner`` (frozen; runs under ``inference_mode``).
    """

    def __init__(self, sam: object) -> None:
        self.sam = sam

    def mask(self, image: np.ndarray, valid: np.ndarray, parsed: ParsedAnswer) -> np.ndarray:
        height, width = image.shape[:2]
        out = np.zeros((height, width), bool)
        if parsed.no_target:
            return out
        frame = ModelFrame(width=width, height=height)
        prompts = [frame.prompt_to_pixels(o) for o in parsed.objects]
        for m in self.sam.predict(image, prompts):  # type: ignore[attr-defined]
            out[m.window.slices] |= m.logits > 0
        return out & valid


class BoxMaskStage:
    """A stand-in mask stage: each object's mask is its box (no SAM).

    For tests where SAM has random weights (its masks then ignore the prompt, so the
    reward would carry no signal about the answer) and for checks of the loop itself.
    """

    def mask(self, image: np.ndarray, valid: np.ndarray, parsed: ParsedAnswer) -> np.ndarray:
        height, width = image.shape[:2]
        out = np.zeros((height, width), bool)
        frame = ModelFrame(width=width, height=height)
        cx, cy = np.arange(width) + 0.5, np.arange(height) + 0.5
        for obj in parsed.objects:
            if obj.box is None:
                continue
            x1, y1, x2, y2 = frame.box_to_pixels(obj.box)
            inside_x = (cx >= x1) & (cx < x2)
            inside_y = (cy >= y1) & (cy < y2)
            out |= inside_y[:, None] & inside_x[None, :]
        return out & valid


def mask_iou(pred: np.ndarray, target: np.ndarray) -> float:
    """IoU of two boolean masks; two empty masks agree perfectly (1.0)."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    union = int(np.count_nonzero(pred | target))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(pred & target)) / union


@dataclass(frozen=True)
class Scored:
    """One completion's reward and what it was made of.

    Attributes:
        reward: The reward in [0, 1].
        iou: Mask IoU with the target (None for unparseable answers).
        parse_failed: Nothing usable and no explicit empty list.
        said_no_target: The answer was an explicit empty list.
        objects: Objects the parser kept.
    """

    reward: float
    iou: float | None
    parse_failed: bool
    said_no_target: bool
    objects: int


def score_completion(
    text: str, image: np.ndarray, valid: np.ndarray, target: np.ndarray, stage: MaskStage
) -> Scored:
    """The reward of one completion (rules in the module docstring).

    Args:
        text: The completion.
        image: (H, W, 3) uint8 example image (the extent, not the 840² overview).
        valid: (H, W) bool.
        target: (H, W) bool target mask; all False for a negative example.
        stage: The frozen mask stage.
    """
    parsed = parse_answer(text)
    failed = parsed.no_target and not parsed.explicit_empty
    empty_answer = parsed.no_target and parsed.explicit_empty
    if failed:
        return Scored(0.0, None, True, False, 0)
    negative = not np.any(target)
    if negative:
        reward = 1.0 if empty_answer else 0.0
        return Scored(reward, reward, False, empty_answer, len(parsed.objects))
    pred = stage.mask(image, valid, parsed) if not empty_answer else np.zeros_like(target)
    iou = mask_iou(pred, target)
    return Scored(iou, iou, False, empty_answer, len(parsed.objects))
