"""The Hugging Face Hub weights of the shipped models, in one torch-free place.

The model registry (:mod:`rs_reasoner.segmenters.builtin`) lists these without loading any
model code, and the model modules resolve the same specs when they load.
"""

from __future__ import annotations

from rs_reasoner.weights import WeightSpec

# -- open vocabulary --------------------------------------------------------------------------

#: Default weights: OpenAI CLIP ViT-B/16 in open_clip format on the Hub. open_clip itself
#: caches ``open_clip_model.safetensors`` where the repo has it (this one does) and the
#: pickled ``.bin`` otherwise, so either counts.
OPENAI_VIT_B16_WEIGHTS = WeightSpec(
    repo_id="timm/vit_base_patch16_clip_224.openai",
    filename="open_clip_model.safetensors",
    alternatives=("open_clip_pytorch_model.bin",),
    purpose="OpenAI CLIP ViT-B/16 (open_clip format)",
)
#: RemoteCLIP ViT-L/14 (Liu et al. 2024), a plain open_clip state dict.
REMOTECLIP_VIT_L14_WEIGHTS = WeightSpec(
    repo_id="chendelong/RemoteCLIP",
    filename="RemoteCLIP-ViT-L-14.pt",
    purpose="RemoteCLIP ViT-L/14 (remote-sensing CLIP, open_clip state dict)",
)
#: RemoteCLIP was fine-tuned (with the ITRA code) from OpenAI's CLIP, whose blocks use
#: QuickGELU, and its published evaluation (retrieval.py in ChenDelong1999/RemoteCLIP)
#: builds the model with ``pretrained='openai'`` (open_clip then sets QuickGELU) before
#: loading the checkpoint. The README's ``create_model_and_transforms(name)`` (GELU) is
#: a convenience snippet, not the network the weights were trained in.
REMOTECLIP_QUICK_GELU = True
#: RS-ZeroSeg's default remote-sensing stream (a transformers DINOv2 repo).
DINOV2_SMALL_WEIGHTS = WeightSpec(
    repo_id="facebook/dinov2-small",
    purpose="RS-ZeroSeg remote-sensing stream (DINOv2)",
    allow_patterns=("config.json", "model.safetensors"),
    required=("config.json", "model.safetensors"),
)
#: SAM 3 (Meta, gated: the licence is accepted on the Hub, then a token). Only the
#: transformers files; the repo's original ``sam3.pt`` (same weights) is not fetched.
SAM3_WEIGHTS = WeightSpec(
    repo_id="facebook/sam3",
    purpose="SAM 3 (concept segmentation, transformers format)",
    allow_patterns=("*.json", "model.safetensors", "*.txt"),
    required=("config.json", "model.safetensors", "tokenizer_config.json"),
)
#: Weights training builds on that no registered model serves, under the name
#: ``rs-reasoner models pull NAME`` takes: the pretrained backbones of an RS-ZeroSeg
#: fine-tuned on the user's classes (``rs-reasoner train --model rs-zeroseg``).
TRAINING_WEIGHTS: dict[str, tuple[WeightSpec, ...]] = {
    "rs-zeroseg": (OPENAI_VIT_B16_WEIGHTS, DINOV2_SMALL_WEIGHTS),
}

# -- reasoning --------------------------------------------------------------------------------

#: Files a Qwen2.5-VL snapshot needs (weights, configs, tokenizer, chat template).
SNAPSHOT_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.jinja")
#: Without these a Qwen2.5-VL snapshot is not a model (shards an index names are
#: checked as well). The image processor's settings are ``preprocessor_config.json`` in
#: snapshots saved by transformers 4.x (the published Think2Seg-RS repos) and
#: ``processor_config.json`` in those saved by transformers 5, so either will do.
SNAPSHOT_REQUIRED = (
    "config.json", "*.safetensors", "tokenizer_config.json", "*processor_config.json",
)

#: Selectable prompter weights.
PROMPTER_WEIGHTS: dict[str, WeightSpec] = {
    "think2seg-rs-3b": WeightSpec(
        repo_id="RicardoString/Think2Seg-RS-3B",
        purpose="Think2Seg-RS prompter (Qwen2.5-VL-3B, GRPO on EarthReason)",
        allow_patterns=SNAPSHOT_PATTERNS,
        required=SNAPSHOT_REQUIRED,
    ),
    "think2seg-rs-7b": WeightSpec(
        repo_id="RicardoString/Think2Seg-RS-7B",
        purpose="Think2Seg-RS prompter (Qwen2.5-VL-7B, GRPO on EarthReason)",
        allow_patterns=SNAPSHOT_PATTERNS,
        required=SNAPSHOT_REQUIRED,
    ),
    "qwen2.5-vl-3b": WeightSpec(
        repo_id="Qwen/Qwen2.5-VL-3B-Instruct",
        purpose="Qwen2.5-VL-3B-Instruct (base model, not fine-tuned for prompting SAM)",
        allow_patterns=SNAPSHOT_PATTERNS,
        required=SNAPSHOT_REQUIRED,
    ),
    "qwen2.5-vl-7b": WeightSpec(
        repo_id="Qwen/Qwen2.5-VL-7B-Instruct",
        purpose="Qwen2.5-VL-7B-Instruct (base model, not fine-tuned for prompting SAM)",
        allow_patterns=SNAPSHOT_PATTERNS,
        required=SNAPSHOT_REQUIRED,
    ),
}
DEFAULT_PROMPTER = "think2seg-rs-3b"
#: variant → (packaged sam2 config, Hub repo, checkpoint file).
SAM_VARIANTS: dict[str, tuple[str, str, str]] = {
    "tiny": (
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        "facebook/sam2.1-hiera-tiny",
        "sam2.1_hiera_tiny.pt",
    ),
    "small": (
        "configs/sam2.1/sam2.1_hiera_s.yaml",
        "facebook/sam2.1-hiera-small",
        "sam2.1_hiera_small.pt",
    ),
    "base_plus": (
        "configs/sam2.1/sam2.1_hiera_b+.yaml",
        "facebook/sam2.1-hiera-base-plus",
        "sam2.1_hiera_base_plus.pt",
    ),
    "large": (
        "configs/sam2.1/sam2.1_hiera_l.yaml",
        "facebook/sam2.1-hiera-large",
        "sam2.1_hiera_large.pt",
    ),
}
#: The paper's choice: hiera-small beat larger SAMs on semantic-level targets.
DEFAULT_SAM_VARIANT = "small"


def sam_weights(variant: str = DEFAULT_SAM_VARIANT) -> WeightSpec:
    """The checkpoint a SAM 2.1 variant needs.

    Args:
        variant: ``tiny``, ``small``, ``base_plus`` or ``large``.

    Returns:
        Its weight spec (one ``.pt`` file on the Hub).
    """
    _, repo, filename = sam_variant(variant)
    return WeightSpec(repo_id=repo, filename=filename, purpose=f"SAM 2.1 hiera-{variant}")


def sam_variant(variant: str) -> tuple[str, str, str]:
    """``(packaged sam2 config, Hub repo, checkpoint file)`` of a SAM 2.1 variant.

    Raises:
        ValueError: An unknown variant, with the known ones.
    """
    try:
        return SAM_VARIANTS[variant]
    except KeyError:
        raise ValueError(
            f"unknown SAM 2.1 variant {variant!r}; choose one of {', '.join(SAM_VARIANTS)}"
        ) from None
