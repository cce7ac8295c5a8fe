"""Sliding windows over an image: where they start and how overlapping predictions blend
(shared by the dense segmenters and the models trained here).

Torch is imported inside the functions: the registry imports segmenter modules that use
these helpers while listing models, which must not load torch.
"""

from __future__ import annotations

from typing import Any


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of sliding windows covering ``[0, size)``; the last ends at ``size``.

    Args:
        size: Length to cover.
        window: Window length.
        stride: Step between windows (1..window).

    Returns:
        Increasing start offsets (``[0]`` when ``size <= window``).
    """
    if size <= window:
        return [0]
    return [*range(0, size - window, stride), size - window]


def blend_weight(height: int, width: int, device: Any = None) -> Any:
    """Per-pixel weight of a window's prediction where windows overlap.

    A tent profile with a floor of 0.1: window centres (more context) count more than
    borders, and borders never count 0, so every pixel has a weight.

    Args:
        height: Window height.
        width: Window width.
        device: Torch device of the result (default CPU).

    Returns:
        (height, width) float32 tensor in [0.01, 1].
    """
    import torch

    def ramp(n: int) -> torch.Tensor:
        offset = (torch.arange(n, device=device, dtype=torch.float32) + 0.5 - n / 2).abs()
        return (1 - offset / (n / 2)).clamp(min=0.1)

    return ramp(height)[:, None] * ramp(width)[None, :]
