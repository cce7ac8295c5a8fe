"""Predictor sources for click-to-segment tests (``RS_REASONER_INTERACTIVE_PREDICTOR``).

``tiny_sam``: the real SAM 2.1 hiera-tiny architecture with random weights and a 256-px
input (the real encoder and decoder code paths, cheap on CPU). ``rect``: a stand-in whose
mask is exactly the prompt box (or a square around the first positive click), so tests
know to the pixel which polygon must come back; it counts image encodings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rs_reasoner.interactive.predictors import SamPredictors

#: Side in pixels of the square a lone click gives with the ``rect`` stand-in.
CLICK_SQUARE = 10


def tiny_sam(device: str = "cpu") -> SamPredictors:
    """Random-weight SAM 2.1 hiera-tiny, 256-px input."""
    import torch

    from rs_reasoner.segmenters.reasoning.sam import build_sam2_model

    def build() -> Any:
        torch.manual_seed(0)
        return build_sam2_model("tiny", None, device, image_size=256)

    return SamPredictors(device, build=build)


class RectPredictor:
    """A SAM predictor stand-in: the mask is the box, else a square around a click."""

    encodings = 0  # image encodings over all instances (set_image calls)

    def __init__(self) -> None:
        self.shape: tuple[int, int] = (0, 0)
        self.calls: list[dict[str, Any]] = []

    def set_image(self, image: np.ndarray) -> None:
        RectPredictor.encodings += 1
        self.shape = image.shape[:2]

    def predict(self, **kw: Any) -> tuple[np.ndarray, np.ndarray, None]:
        self.calls.append(kw)
        h, w = self.shape
        if kw.get("box") is not None:
            x0, y0, x1, y1 = kw["box"]
        else:
            labels = kw["point_labels"]
            x, y = kw["point_coords"][int(np.argmax(labels))]
            half = CLICK_SQUARE / 2
            x0, y0, x1, y1 = x - half, y - half, x + half, y + half
        cx, cy = np.arange(w) + 0.5, np.arange(h) + 0.5
        inside = ((cy >= y0) & (cy < y1))[:, None] & ((cx >= x0) & (cx < x1))[None, :]
        n = 3 if kw.get("multimask_output") else 1
        logits = np.where(inside, 8.0, -8.0).astype(np.float32)
        return np.repeat(logits[None], n, axis=0), np.linspace(0.9, 0.5, n), None


class RectSource:
    def new(self) -> RectPredictor:
        return RectPredictor()


def rect(device: str = "cpu") -> RectSource:  # noqa: ARG001 - the source signature
    """The box-shaped stand-in."""
    return RectSource()
