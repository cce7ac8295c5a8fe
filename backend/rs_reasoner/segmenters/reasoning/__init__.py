"""Reasoning segmentation (Think2Seg-RS): a Qwen2.5-VL prompter drives a frozen SAM.

Modules, one job each: :mod:`.template` (instruction and chat), :mod:`.parser` (answer →
prompts, never raises), :mod:`.geometry` (840² model space ↔ extent pixels ↔ crops),
:mod:`.prompter` (Qwen2.5-VL generation), :mod:`.sam` (SAM 2.1 on full-resolution crops),
:mod:`.sam3_masks` (SAM 3's interactive head behind the same calls), :mod:`.segmenter`
(the :class:`ReasoningSegmenter` that ties them together).

``ReasoningSegmenter`` is imported lazily so that the parser and geometry stay usable
without importing torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReasoningSegmenter", "think2seg_rs_7b", "think2seg_sam3"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rs_reasoner.segmenters.reasoning import segmenter

        return getattr(segmenter, name)
    raise AttributeError(name)
