"""The reward on constructed masks, and the real SAM 2.1 as the mask stage."""

from __future__ import annotations

import numpy as np
import pytest

from rs_reasoner.segmenters.reasoning.sam import SamRefiner
from rs_reasoner_training.grpo.reward import (
    BoxMaskStage,
    SamMaskStage,
    mask_iou,
    score_completion,
)

SIDE = 84  # extent pixels; the 840 frame maps 10:1 onto it


def _target(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((SIDE, SIDE), bool)
    mask[rows, cols] = True
    return mask


def _score(text: str, target: np.ndarray):  # noqa: ANN202
    image = np.zeros((SIDE, SIDE, 3), np.uint8)
    return score_completion(text, image, np.ones((SIDE, SIDE), bool), target, BoxMaskStage())


def test_mask_iou_on_constructed_masks() -> None:
    a = _target(slice(0, 10), slice(0, 10))
    b = _target(slice(0, 10), slice(5, 15))
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, b) == pytest.approx(50 / 150)
    assert mask_iou(a, ~a) == 0.0
    assert mask_iou(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_reward_is_the_iou_of_the_answer_mask() -> None:
    target = _target(slice(0, 42), slice(0, 42))  # top-left quarter
    exact = _score('<answer>[{"bbox_2d": [0, 0, 420, 420]}]</answer>', target)
    assert exact.reward == pytest.approx(1.0) and not exact.parse_failed and exact.objects == 1
    # Box twice as wide: half of it is outside the target.
    wide = _score('[{"bbox_2d": [0, 0, 840, 420]}]', target)
    assert wide.reward == pytest.approx(0.5)
    # Two objects: the union of their masks is scored.
    both = _score(
        '[{"bbox_2d": [0, 0, 420, 210]}, {"bbox_2d": [0, 210, 420, 420]}]', target
    )
    assert both.reward == pytest.approx(1.0) and both.objects == 2


def test_unparseable_answers_get_zero_and_are_counted() -> None:
    target = _target(slice(0, 42), slice(0, 42))
    for text in ("", "I think it is the top left.", "<think>looking", '[{"bbox_2d": [1, 2]}]'):
        scored = _score(text, target)
        assert scored.reward == 0.0 and scored.parse_failed, text
        assert scored.iou is None
    negative = np.zeros((SIDE, SIDE), bool)
    assert _score("no idea", negative).parse_failed  # also on a "no target" example


def test_no_target_rules() -> None:
    negative = np.zeros((SIDE, SIDE), bool)
    said_none = _score("<answer>```json[]```</answer>", negative)
    assert said_none.reward == 1.0 and said_none.said_no_target and not said_none.parse_failed
    assert _score('[{"bbox_2d": [0, 0, 420, 420]}]', negative).reward == 0.0
    # "Nothing here" on a positive example is a wrong answer, not a parse failure.
    positive = _score("[]", _target(slice(0, 42), slice(0, 42)))
    assert positive.reward == 0.0 and not positive.parse_failed


def test_real_sam_mask_stage_draws_inside_the_prompted_crop() -> None:
    """Plumbing with SAM 2.1 (real config, random weights): the answer's box is mapped to
    extent pixels, SAM runs on the crop around it and the reward is that mask's IoU."""
    sam = SamRefiner.random_init("tiny", image_size=256, min_side=64)
    stage = SamMaskStage(sam)
    side = 256
    image = np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)
    valid = np.ones((side, side), bool)
    target = np.zeros((side, side), bool)
    target[:64, :64] = True
    text = '[{"bbox_2d": [0, 0, 210, 210], "positive_points": [[100, 100], [50, 60]]}]'
    scored = score_completion(text, image, valid, target, stage)
    assert not scored.parse_failed and scored.objects == 1
    (window,) = sam.last_stats.windows
    # The crop covers the box mapped to pixels (0..64) plus context, not the whole extent.
    assert window.row0 == 0 and window.col0 == 0 and window.row1 >= 64 and window.row1 < side
    from rs_reasoner.segmenters.reasoning.parser import parse_answer

    mask = stage.mask(image, valid, parse_answer(text))
    assert not mask[window.row1 :, :].any() and not mask[:, window.col1 :].any()
    assert scored.reward == pytest.approx(mask_iou(mask, target))
