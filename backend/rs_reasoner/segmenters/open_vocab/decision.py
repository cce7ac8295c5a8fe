"""From class probabilities to a TileResult: what every open-vocabulary segmenter shares."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.segmenters.base import SegmentationQuery, TileResult


def require_classes(query: SegmentationQuery) -> None:
    """Refuse a query without class names (clear error for the user).

    Raises:
        InvalidRequestError: The query names no class.
    """
    if not query.classes:
        raise InvalidRequestError(
            "Open-vocabulary segmentation needs at least one class name.",
            "List the classes to find, e.g. 'building; road; water'.",
        )


def argmax_result(
    probs: np.ndarray, valid: np.ndarray, classes: Sequence[Sequence[str]]
) -> TileResult:
    """Label each valid pixel with its most probable channel.

    Args:
        probs: (1 + C, H, W) background-first probabilities.
        valid: (H, W) bool; invalid pixels get label 0 and score 0.
        classes: The C classes (synonym lists; the first name labels the class).

    Returns:
        Labels 0..C (0 = background), the winning probability as score, class names.
    """
    labels = probs.argmax(axis=0)
    scores = np.take_along_axis(probs, labels[None], axis=0)[0]
    return TileResult(
        labels=np.where(valid, labels, 0).astype(np.int32),
        scores=np.where(valid, scores, 0.0).astype(np.float32),
        class_names=[syn[0] for syn in classes],
    )
