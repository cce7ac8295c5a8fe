"""Registers the segmenters that ship with the backend."""

from __future__ import annotations

from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.hub_weights import (
    DINOV2_SMALL_WEIGHTS,
    OPENAI_VIT_B16_WEIGHTS,
    PROMPTER_WEIGHTS,
    REMOTECLIP_VIT_L14_WEIGHTS,
    sam_weights,
)
from rs_reasoner.segmenters.registry import ModelSpec, register

_SAM_SMALL = sam_weights("small")
_RS_ZEROSEG = (OPENAI_VIT_B16_WEIGHTS, DINOV2_SMALL_WEIGHTS)

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
register(
    ModelSpec(
        name="clip-openvocab",
        modes=(Mode.open_vocabulary,),
        description=(
            "Training-free open-vocabulary segmentation (SegEarth-OV style) with CLIP ViT-B/16: "
            "self-correlation attention, global-bias removal, guided upsampling."
        ),
        factory="rs_reasoner.segmenters.open_vocab.training_free:ClipOpenVocabSegmenter",
        weights=(OPENAI_VIT_B16_WEIGHTS,),
        default_for=(Mode.open_vocabulary,),
        priority=50,
    )
)
register(
    ModelSpec(
        name="rs-zeroseg",
        modes=(Mode.open_vocabulary,),
        description=(
            "RS-ZeroSeg: CLIP + DINOv2 dual-stream model with multi-scale alignment and a "
            "category-adaptive head; needs a trained checkpoint "
            "(RS_REASONER_RS_ZEROSEG_CHECKPOINT)."
        ),
        factory="rs_reasoner.segmenters.open_vocab.rs_zeroseg.segmenter:RSZeroSegSegmenter",
        weights=_RS_ZEROSEG,
        # Not a default: it is useless without a checkpoint trained for the user's classes.
        priority=40,
    )
)
register(
    ModelSpec(
        name="think2seg-rs",
        modes=(Mode.reasoning,),
        description=(
            "Think2Seg-RS: Qwen2.5-VL-3B reasons about the sentence and prompts SAM 2.1 "
            "(hiera-small) with boxes and points."
        ),
        factory="rs_reasoner.segmenters.reasoning.segmenter:ReasoningSegmenter",
        weights=(PROMPTER_WEIGHTS["think2seg-rs-3b"], _SAM_SMALL),
        default_for=(Mode.reasoning,),
        priority=50,
    )
)
register(
    ModelSpec(
        name="think2seg-rs-7b",
        modes=(Mode.reasoning,),
        description="Think2Seg-RS with the Qwen2.5-VL-7B prompter (more GPU memory, slower).",
        factory="rs_reasoner.segmenters.reasoning.segmenter:think2seg_rs_7b",
        weights=(PROMPTER_WEIGHTS["think2seg-rs-7b"], _SAM_SMALL),
        priority=40,
    )
)
register(
    ModelSpec(
        name="rs-zeroseg+clip",
        modes=(Mode.open_vocabulary,),
        description=(
            "A trained RS-ZeroSeg checkpoint fused class by class with training-free CLIP, so "
            "a class one of them misses is kept (rule: options.fusion_rule)."
        ),
        factory="rs_reasoner.segmenters.open_vocab.fused:rs_zeroseg_with_clip",
        weights=_RS_ZEROSEG,
        priority=30,
    )
)
register(
    ModelSpec(
        name="remoteclip-openvocab",
        modes=(Mode.open_vocabulary,),
        description=(
            "Training-free open-vocabulary segmentation as clip-openvocab, on RemoteCLIP "
            "ViT-L/14 (CLIP fine-tuned on remote-sensing image-text pairs)."
        ),
        factory="rs_reasoner.segmenters.open_vocab.training_free:remoteclip_segmenter",
        weights=(REMOTECLIP_VIT_L14_WEIGHTS,),
        priority=45,
    )
)
