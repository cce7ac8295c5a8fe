"""Registers the segmenters that ship with the backend."""

from __future__ import annotations

from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.registry import ModelSpec, register
from rs_reasoner.weights import WeightSpec

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
        # A literal, not imported from the model module: listing models must not load torch.
        weights=(
            WeightSpec(
                repo_id="timm/vit_base_patch16_clip_224.openai",
                filename="open_clip_pytorch_model.bin",
                purpose="OpenAI CLIP ViT-B/16 (open_clip format)",
            ),
        ),
        default_for=(Mode.open_vocabulary,),
        priority=50,
    )
)
