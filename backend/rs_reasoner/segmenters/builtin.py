"""Registers the segmenters that ship with the backend."""

from __future__ import annotations

from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.registry import ModelSpec, register

register(
    ModelSpec(
        name="index-baseline",
        modes=(Mode.open_vocabulary,),
        description="Weight-free baseline: vegetation (Excess Green) and water from RGB.",
        factory="rs_reasoner.segmenters.index_baseline:IndexBaselineSegmenter",
        default_for=(Mode.open_vocabulary,),
        priority=-100,  # any learned open-vocabulary model wins the default
    )
)
