"""Stand-ins for the reasoning tests: a fixed-answer prompter and a box-shaped SAM."""

from __future__ import annotations

from typing import Any

import numpy as np

from rs_reasoner.segmenters.reasoning.prompter import GenerationStats, PrompterOutput

Box = tuple[float, float, float, float]


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A reproducible random RGB uint8 image."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    """Pixels whose centres lie in ``box`` (x1, y1, x2, y2), continuous pixel coordinates."""
    h, w = shape
    cx = np.arange(w) + 0.5
    cy = np.arange(h) + 0.5
    in_x = (cx >= box[0]) & (cx < box[2])
    in_y = (cy >= box[1]) & (cy < box[3])
    return in_y[:, None] & in_x[None, :]


class FixedPrompter:
    """A prompter whose answer is a given text; records what it was shown."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls: list[tuple[np.ndarray, str]] = []

    def generate(self, image: np.ndarray, query: str) -> PrompterOutput:
        self.calls.append((image, query))
        return PrompterOutput(text=self.text, stats=GenerationStats(new_tokens=1))

    def close(self) -> None:
        pass


class BoxPredictor:
    """A SAM predictor stand-in whose mask is exactly the prompt box.

    Logits are +8 for pixels whose centre is in the box and -8 elsewhere, so the
    segmenter's output shows where the box it passed landed, to the pixel.
    """

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.calls: list[dict[str, Any]] = []

    def set_image(self, image: np.ndarray) -> None:
        self.images.append(image)

    def predict(self, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, None]:
        self.calls.append(kwargs)
        inside = box_mask(self.images[-1].shape[:2], tuple(kwargs["box"]))
        return np.where(inside, 8.0, -8.0)[None].astype(np.float32), np.array([0.9]), None


class SpyPredictor:
    """Wraps a real ``SAM2ImagePredictor``: records its inputs, then calls through."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.images: list[np.ndarray] = []
        self.calls: list[dict[str, Any]] = []

    @property
    def device(self) -> Any:
        return self.real.device

    def set_image(self, image: np.ndarray) -> None:
        self.images.append(image.copy())
        self.real.set_image(image)

    def predict(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.real.predict(**kwargs)
