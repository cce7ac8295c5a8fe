"""Training RS-ZeroSeg on the user's classes: which backbones are here, the input size for
a training crop, and a fresh model.

The model itself (:class:`~rs_reasoner.models.rs_zeroseg_classes.RSZeroSegModel`, why it is
trained with softmax cross-entropy, what checkpoints store) lives in the backend, which
rebuilds it from checkpoints to serve it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rs_reasoner.models.rs_zeroseg_classes import ARCH, SMALL_RANDOM, RSZeroSegModel

__all__ = [
    "ARCH",
    "SMALL_RANDOM",
    "RSZeroSegModel",
    "backbones_available",
    "build_rs_zeroseg",
    "training_image_size",
]


def backbones_available(config: Mapping[str, Any] | None = None) -> bool:
    """Whether the pretrained CLIP and DINOv2 backbone files resolve locally.

    Args:
        config: RSZeroSegConfig overrides (default: the paper's ViT-B/16 + DINOv2-small).

    Returns:
        True when every backbone weight file is on disk (no download is tried).
    """
    from rs_reasoner.segmenters.open_vocab.rs_zeroseg.config import RSZeroSegConfig
    from rs_reasoner.segmenters.open_vocab.rs_zeroseg.model import weight_specs
    from rs_reasoner.weights import is_available

    try:
        specs = weight_specs(RSZeroSegConfig(**dict(config or {})))
    except ValueError:  # open_clip knows no Hub copy for the tag
        return False
    return all(is_available(s) for s in specs)


def training_image_size(crop: int, config: Mapping[str, Any] | None, pretrained: bool) -> int:
    """The CLIP input size for training crops of side ``crop``: the largest multiple of
    the CLIP patch not above it (at least one patch).

    Args:
        crop: Training crop (or tile) side in pixels.
        config: RSZeroSegConfig overrides (their ``clip_overrides`` may set the patch).
        pretrained: Whether the default config is the paper's (else :data:`SMALL_RANDOM`).

    Returns:
        The image size.
    """
    import open_clip

    overrides = dict(config if config is not None else ({} if pretrained else SMALL_RANDOM))
    vision = (overrides.get("clip_overrides") or {}).get("vision_cfg") or {}
    patch = vision.get("patch_size")
    if patch is None:
        name = overrides.get("clip_model", "ViT-B-16")
        patch = (open_clip.get_model_config(name) or {}).get("vision_cfg", {}).get("patch_size", 16)
    patch = int(patch)
    return max(patch, crop // patch * patch)


def build_rs_zeroseg(
    class_names: Sequence[str],
    *,
    pretrained: bool,
    config: Mapping[str, Any] | None = None,
    crop: int | None = None,
    prompts: Mapping[str, Sequence[str]] | None = None,
    backbone_lr_scale: float = 0.1,
) -> RSZeroSegModel:
    """An :class:`RSZeroSegModel` for training on crops of side ``crop``.

    Args:
        class_names: The classes.
        pretrained: Use the local pretrained backbones.
        config: RSZeroSegConfig overrides on the paper's config; None: the paper's
            config when pretrained, :data:`SMALL_RANDOM` otherwise.
        crop: Training crop side; sets ``image_size`` unless ``config`` gives one.
        prompts: Synonyms per class for the text embedding.
        backbone_lr_scale: Learning-rate factor of trained backbone weights.

    Returns:
        The model (CPU).
    """
    base = dict(config) if config is not None else ({} if pretrained else dict(SMALL_RANDOM))
    if crop is not None and "image_size" not in (config or {}):
        base["image_size"] = training_image_size(crop, base, pretrained)
        if not pretrained and "rs_overrides" in base:
            base["rs_overrides"] = {**base["rs_overrides"], "image_size": base["image_size"]}
    return RSZeroSegModel(
        class_names,
        base,
        pretrained=pretrained,
        prompts=prompts,
        backbone_lr_scale=backbone_lr_scale,
    )
