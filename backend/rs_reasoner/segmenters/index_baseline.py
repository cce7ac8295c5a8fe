"""A weight-free baseline: vegetation and water from RGB colour indices.

It needs no model weights, so it works offline on any machine and is what ``make demo``
runs. It is a classical baseline, not a substitute for the learned segmenters:
vegetation is the Excess Green index (ExG = 2g - r - b on chromatic coordinates,
Woebbecke et al. 1995); water is dark, blue-dominant pixels.
"""

from __future__ import annotations

import numpy as np

from rs_reasoner.segmenters.base import SegmentationQuery, Segmenter, TileResult
from rs_reasoner.segmenters.index_classes import check_query, match_class

_EXG_CENTRE, _EXG_SLOPE = 0.04, 40.0
_WATER_BRIGHTNESS, _WATER_SLOPE = 0.22, 25.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def index_scores(image: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class scores in [0, 1] for an RGB uint8 image.

    Args:
        image: (H, W, 3) uint8.

    Returns:
        ``{"vegetation": (H, W) float32, "water": (H, W) float32}``.
    """
    rgb = image.astype(np.float32) / 255.0
    total = rgb.sum(axis=2) + 1e-6
    r, g, b = (rgb[..., i] / total for i in range(3))
    exg = 2 * g - r - b
    brightness = rgb.mean(axis=2)
    vegetation = _sigmoid((exg - _EXG_CENTRE) * _EXG_SLOPE)
    blueish = _sigmoid((b - np.maximum(r, g) + 0.01) * 60.0)
    water = _sigmoid((_WATER_BRIGHTNESS - brightness) * _WATER_SLOPE) * blueish
    return {"vegetation": vegetation.astype(np.float32), "water": water.astype(np.float32)}


class IndexBaselineSegmenter(Segmenter):
    """Vegetation/water from colour indices; pixels go to their highest-scoring class."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device  # numpy only; kept for the factory signature

    def segment(
        self, image: np.ndarray, valid: np.ndarray, query: SegmentationQuery
    ) -> TileResult:
        check_query(query)
        matched = [(syn[0], match_class(syn)) for syn in query.classes]
        all_scores = index_scores(image)
        stack = np.stack([all_scores[cls] for _, cls in matched])
        best = stack.argmax(axis=0)
        scores = np.take_along_axis(stack, best[None], axis=0)[0]
        labels = np.where(valid, best + 1, 0).astype(np.int32)
        return TileResult(labels=labels, scores=scores, class_names=[n for n, _ in matched])
