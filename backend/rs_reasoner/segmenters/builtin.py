"""The segmenters that ship with the backend, as specs (the registry registers them).

Factories are ``"module:attr"`` strings naming each model's loader, so nothing here
imports a model; the static facts (modes, whole extent, input size, weights) come from
torch-free modules or are literals that ``tests/backend/test_registry.py`` compares with
the model code.
"""

from __future__ import annotations

from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters import index_classes
from rs_reasoner.segmenters.hub_weights import (
    OPENAI_VIT_B16_WEIGHTS,
    PROMPTER_WEIGHTS,
    REMOTECLIP_VIT_L14_WEIGHTS,
    SAM3_WEIGHTS,
    sam_weights,
)
from rs_reasoner.segmenters.reasoning.template import MODEL_SIZE as PROMPTER_SIZE
from rs_reasoner.segmenters.spec import ModelSpec

_SAM_SMALL = sam_weights("small")
#: Sliding-window side of the training-free CLIP segmenters (OpenVocabSettings.window).
_CLIP_WINDOW = 224
#: SAM 3's native input side (sam3_openvocab.SAM3_INPUT_SIZE).
_SAM3_INPUT = 1008

BUILTIN_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="index-baseline",
        modes=(Mode.open_vocabulary,),
        description="Weight-free baseline: vegetation (Excess Green) and water from RGB.",
        factory="rs_reasoner.segmenters.index_baseline:IndexBaselineSegmenter",
        default_for=(Mode.open_vocabulary,),
        priority=-100,  # any learned open-vocabulary model wins the default
        check_query=index_classes.check_query,  # vegetation and water only: refuse others
    ),
    ModelSpec(
        name="clip-openvocab",
        modes=(Mode.open_vocabulary,),
        description=(
            "Training-free open-vocabulary segmentation (SegEarth-OV style) with CLIP ViT-B/16: "
            "self-correlation attention, global-bias removal, guided upsampling."
        ),
        factory="rs_reasoner.segmenters.open_vocab.training_free:ClipOpenVocabSegmenter"
        ".from_pretrained",
        weights=(OPENAI_VIT_B16_WEIGHTS,),
        default_for=(Mode.open_vocabulary,),
        priority=50,
        input_size=_CLIP_WINDOW,
    ),
    ModelSpec(
        name="sam3-openvocab",
        modes=(Mode.open_vocabulary,),
        description=(
            "Open-vocabulary segmentation with SAM 3 concept prompts (SegEarth-OV3 fusion of "
            "instance and semantic heads, absent classes dropped); one polygon per object. "
            "Default on CUDA when its gated weights are present."
        ),
        factory="rs_reasoner.segmenters.open_vocab.sam3_openvocab:Sam3OpenVocabSegmenter"
        ".from_pretrained",
        weights=(SAM3_WEIGHTS,),
        default_for=(Mode.open_vocabulary,),
        priority=60,
        input_size=_SAM3_INPUT,
        default_devices=("cuda",),
    ),
    ModelSpec(
        name="think2seg-rs",
        modes=(Mode.reasoning,),
        description=(
            "Think2Seg-RS: Qwen2.5-VL-3B reasons about the sentence and prompts SAM 2.1 "
            "(hiera-small) with boxes and points."
        ),
        factory="rs_reasoner.segmenters.reasoning.segmenter:ReasoningSegmenter.from_pretrained",
        weights=(PROMPTER_WEIGHTS["think2seg-rs-3b"], _SAM_SMALL),
        default_for=(Mode.reasoning,),
        priority=50,
        whole_extent=True,
        input_size=PROMPTER_SIZE,
    ),
    ModelSpec(
        name="think2seg-sam3",
        modes=(Mode.reasoning,),
        description=(
            "Think2Seg-RS (Qwen2.5-VL-3B) prompting SAM 3's interactive head with boxes and "
            "points instead of SAM 2.1. Default on CUDA when the gated SAM 3 weights are present."
        ),
        factory="rs_reasoner.segmenters.reasoning.segmenter:think2seg_sam3",
        weights=(PROMPTER_WEIGHTS["think2seg-rs-3b"], SAM3_WEIGHTS),
        default_for=(Mode.reasoning,),
        priority=60,
        whole_extent=True,
        input_size=PROMPTER_SIZE,
        default_devices=("cuda",),
    ),
    ModelSpec(
        name="think2seg-rs-7b",
        modes=(Mode.reasoning,),
        description="Think2Seg-RS with the Qwen2.5-VL-7B prompter (more GPU memory, slower).",
        factory="rs_reasoner.segmenters.reasoning.segmenter:think2seg_rs_7b",
        weights=(PROMPTER_WEIGHTS["think2seg-rs-7b"], _SAM_SMALL),
        priority=40,
        whole_extent=True,
        input_size=PROMPTER_SIZE,
    ),
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
        input_size=_CLIP_WINDOW,
    ),
)
