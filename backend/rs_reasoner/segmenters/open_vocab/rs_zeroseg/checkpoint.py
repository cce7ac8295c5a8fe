"""Which state-dict keys a checkpoint of the RS-ZeroSeg network keeps.

A model fine-tuned on the user's classes (``rs-reasoner train --model
rs-zeroseg``) is stored and served as a trained model
(:mod:`rs_reasoner.models.checkpoint`, :class:`rs_reasoner.models.rs_zeroseg_classes.
RSZeroSegModel`). Built on pretrained backbones, it stores only what training changed —
every new RS-ZeroSeg module plus the backbone parameters its freezing policy trains (CLIP
attention layers by default) — and the frozen rest is rebuilt from the local backbone
weights (~130 MB instead of ~700 MB for ViT-B/16 + DINOv2-S). A model with random
backbones (tests, plumbing) stores everything: its frozen weights exist nowhere else.
"""

from __future__ import annotations

from rs_reasoner.segmenters.open_vocab.rs_zeroseg.model import RSZeroSeg


def checkpoint_keys(model: RSZeroSeg, embedded: bool) -> set[str]:
    """State-dict keys a checkpoint of ``model`` holds.

    Args:
        model: The network.
        embedded: Whether the backbones are stored too (random-init models); otherwise
            only new modules and trained backbone weights (the rest is rebuilt from the
            local backbone files).

    Returns:
        The keys.
    """
    keys = set(model.state_dict())
    if embedded:
        return keys
    return {k for k in keys if not model.is_backbone_key(k)} | set(model.trainable_backbone_names())
