"""Open-vocabulary segmentation from several score sources fused class by class.

A trained RS-ZeroSeg head knows the user's classes well but can miss a class it saw
little of; the training-free CLIP segmenter knows every name a little. Fusing their
background-first distributions per class (rules in :mod:`.fusion_rules`) keeps a class that
one source omits. No fused model is registered; this is a library segmenter over sources
built by the caller. Each source must offer ``predict_probabilities(image, valid, classes)`` →
``(1 + C, H, W)`` with background first, as both open-vocabulary segmenters do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.segmenters.base import SegmentationQuery, Segmenter, TileResult
from rs_reasoner.segmenters.open_vocab.decision import argmax_result, require_classes
from rs_reasoner.segmenters.open_vocab.fusion_rules import RULES, FusionRule, fuse_probabilities

#: Environment default of the fusion rule (a request's ``fusion_rule`` option wins).
ENV_RULE = "RS_REASONER_FUSION_RULE"


class ProbabilitySource(Protocol):
    """A segmenter that exposes its background-first class distribution."""

    def predict_probabilities(
        self, image: np.ndarray, valid: np.ndarray, classes: Sequence[Sequence[str]]
    ) -> np.ndarray: ...

    def close(self) -> None: ...


class FusedOpenVocabSegmenter(Segmenter):
    """Labels each pixel by the class-wise fusion of several sources' probabilities.

    Args:
        sources: Two or more probability sources over the same query.
        rule: Default fusion rule (``confidence_weighted`` unless ``$RS_REASONER_FUSION_RULE``
            says otherwise); a request's ``options.fusion_rule`` overrides it.
        device: Torch device of the sources (informational).
    """

    def __init__(
        self,
        sources: Sequence[ProbabilitySource],
        rule: FusionRule | None = None,
        device: str = "cpu",
    ) -> None:
        if len(sources) < 2:
            raise ValueError("fusion needs at least two sources")
        rule = rule or os.environ.get(ENV_RULE) or "confidence_weighted"  # type: ignore[assignment]
        if rule not in RULES:
            raise InvalidRequestError(
                f"Unknown fusion rule '{rule}'.", f"Use one of: {', '.join(RULES)}."
            )
        self.sources = list(sources)
        self.rule: FusionRule = rule  # type: ignore[assignment]
        self.device = device

    def predict_probabilities(
        self,
        image: np.ndarray,
        valid: np.ndarray,
        classes: Sequence[Sequence[str]],
        rule: FusionRule | None = None,
    ) -> np.ndarray:
        """Fused background-first distribution (1 + C, H, W), float32, summing to 1.

        Args:
            image: (H, W, 3) uint8 RGB.
            valid: (H, W) bool.
            classes: The user's classes, each a sequence of synonyms.
            rule: Fusion rule (default: the segmenter's).

        Returns:
            The fused probabilities; channel 0 is background.
        """
        maps = [s.predict_probabilities(image, valid, classes) for s in self.sources]
        return fuse_probabilities(maps, rule=rule or self.rule, valid=valid)

    def segment(self, image: np.ndarray, valid: np.ndarray, query: SegmentationQuery) -> TileResult:
        """Most probable fused class per pixel; background (0) where it wins."""
        require_classes(query)
        rule = getattr(query.options, "fusion_rule", None)
        probs = self.predict_probabilities(image, valid, query.classes, rule=rule)
        return argmax_result(probs, valid, query.classes)

    def close(self) -> None:
        """Close every source."""
        for source in self.sources:
            source.close()
