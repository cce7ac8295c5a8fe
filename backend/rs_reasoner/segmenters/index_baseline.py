"""A weight-free baseline: vegetation and water from RGB colour indices.

It needs no model weights, so it works offline on any machine and is what ``make demo``
runs. It is a classical baseline, not a substitute for the learned segmenters:
vegetation is the Excess Green index (ExG = 2g - r - b on chromatic coordinates,
Woebbecke et al. 1995); water is dark, blue-dominant pixels.
"""

from __future__ import annotations

import numpy as np

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.segmenters.base import SegmentationQuery, Segmenter, TileResult

#: Class → names the user may type for it.
SYNONYMS: dict[str, frozenset[str]] = {
    "vegetation": frozenset(
        "vegetation vegetated trees tree forest forests grass grassland plants canopy "
        "crops crop shrubs fields green".split()
    ),
    "water": frozenset("water river rivers lake lakes pond ponds sea ocean reservoir".split()),
}
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


def match_class(synonyms: tuple[str, ...]) -> str | None:
    """The baseline class a user's class (with synonyms) refers to, if any."""
    for name in synonyms:
        words = {name, name.rstrip("s"), *name.split()}
        for cls, known in SYNONYMS.items():
            if words & known:
                return cls
    return None


def check_query(query: SegmentationQuery) -> None:
    """Refuse classes the baseline cannot segment (the spec's ``check_query``: run when
    a job is submitted, so such a job is refused instead of failing later).

    Raises:
        InvalidRequestError: Naming the classes and what the baseline knows.
    """
    unknown = [syn[0] for syn in query.classes if match_class(syn) is None]
    if unknown:
        raise InvalidRequestError(
            f"The index baseline cannot segment {', '.join(map(repr, unknown))}.",
            "It knows vegetation (trees, grass, ...) and water (river, lake, ...); "
            "use a learned model (see 'rs-reasoner models list') for other classes.",
        )


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
