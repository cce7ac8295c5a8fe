"""Configuration of the RS-ZeroSeg model (architecture, backbones, freezing, loss weight).

The config fully describes how to rebuild the network, so it is stored inside every
checkpoint (:meth:`RSZeroSegConfig.to_dict`) and a checkpoint can be reopened without
any other file. Defaults follow the RS-ZeroSeg paper (Yuan & He, 2025) where it is
specific: CLIP ViT image stream, DINO-style ViT remote-sensing stream, λ = 0.2, and the
best freezing policy of its Table 3 (CLIP attention layers fine-tuned, RS stream frozen).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Trainable = Literal["frozen", "attention", "full"]
TRAINABLE_CHOICES: tuple[str, ...] = ("frozen", "attention", "full")

#: Hyper-parameters of ``facebook/dinov2-small`` (its config.json), so the architecture
#: can be built offline without the Hub config. ``rs_overrides`` change any of them.
DINOV2_SMALL: dict[str, Any] = {
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 6,
    "mlp_ratio": 4,
    "patch_size": 14,
    "image_size": 518,
    "layerscale_value": 1.0,
    "layer_norm_eps": 1e-6,
    "qkv_bias": True,
    "use_swiglu_ffn": False,
    "hidden_act": "gelu",
}


@dataclass
class RSZeroSegConfig:
    """Everything needed to rebuild an RS-ZeroSeg network.

    Attributes:
        clip_model: open_clip architecture name of the VLM stream (``"ViT-B-16"``).
        clip_pretrained: open_clip pretrained tag whose Hub weights are resolved with
            :func:`rs_reasoner.weights.resolve` when building with ``pretrained=True``.
        clip_checkpoint: Local open_clip weights file; overrides ``clip_pretrained``.
        clip_quick_gelu: Force QuickGELU; ``None`` = what the tag was trained with.
        clip_overrides: Keyword overrides for ``open_clip.create_model`` (e.g. a tiny
            ``vision_cfg``/``text_cfg``/``embed_dim`` for tests). ``vision_cfg`` replaces
            the named model's whole vision config.
        rs_model: Hugging Face id of the remote-sensing stream (a ``Dinov2Model``).
        rs_overrides: ``Dinov2Config`` fields overriding :data:`DINOV2_SMALL` when the
            architecture is built offline (random init); ignored for pretrained weights,
            whose own config.json is used.
        image_size: Model input (and sliding-window) size in pixels; a multiple of the
            CLIP patch size. CLIP's positional embedding is resized to it once.
        fused_dim: Channels of the DSFE fusion and MS-CAM features (D_fusion).
        fine_dim: Channels of the fine map F_MSCAM fed to the refinement head.
        fine_stride: Output stride of F_MSCAM (1, 2 or 4); logits are upsampled from it.
        detail_dim: Channels of the shallow image stem that guides the upsampling of the
            patch-grid features to ``fine_stride``; 0 disables it (plain bilinear).
        scales: MS-CAM pyramid scales relative to the CLIP patch grid (1.0 = grid).
        attn_heads: Heads of the MS-CAM cross-attention.
        mscam_rs_attention: Cross-attend fused (VLM-led) queries to RS-stream keys/values
            at each scale (the paper's Eq. 6).
        mscam_text_attention: Also cross-attend visual tokens to the class text
            embeddings at each scale (with residual).
        carh_heads: Attention heads of the category-adaptive refinement head.
        carh_hidden: Hidden channels of the per-class mask projection.
        align_weight: λ of ``L = L_BCE + λ L_align`` (paper: 0.2).
        align_temperature: Initial temperature of the contrastive alignment logits.
        clip_trainable: ``"frozen"``, ``"attention"`` or ``"full"`` for CLIP's image tower
            (its text tower is always frozen).
        rs_trainable: Same for the remote-sensing stream.
    """

    clip_model: str = "ViT-B-16"
    clip_pretrained: str = "openai"
    clip_checkpoint: str | None = None
    clip_quick_gelu: bool | None = None
    clip_overrides: dict[str, Any] = field(default_factory=dict)
    rs_model: str = "facebook/dinov2-small"
    rs_overrides: dict[str, Any] = field(default_factory=dict)
    image_size: int = 448
    fused_dim: int = 256
    fine_dim: int = 64
    fine_stride: int = 4
    detail_dim: int = 32
    scales: tuple[float, ...] = (1.0, 0.5, 0.25)
    attn_heads: int = 8
    mscam_rs_attention: bool = True
    mscam_text_attention: bool = True
    carh_heads: int = 4
    carh_hidden: int = 32
    align_weight: float = 0.2
    align_temperature: float = 0.07
    clip_trainable: Trainable = "attention"
    rs_trainable: Trainable = "frozen"

    def __post_init__(self) -> None:
        self.scales = tuple(float(s) for s in self.scales)
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive, got {self.scales}")
        for name in ("clip_trainable", "rs_trainable"):
            if getattr(self, name) not in TRAINABLE_CHOICES:
                raise ValueError(f"{name} must be one of {TRAINABLE_CHOICES}")
        if self.fine_stride not in (1, 2, 4):
            raise ValueError(f"fine_stride must be 1, 2 or 4, not {self.fine_stride}")
        if self.fused_dim % self.attn_heads or self.fine_dim % self.carh_heads:
            raise ValueError("fused_dim / fine_dim must be divisible by their head counts")
        if min(self.image_size, self.fused_dim, self.fine_dim, self.carh_hidden) < 1:
            raise ValueError("sizes must be positive")
        if self.detail_dim < 0 or self.align_weight < 0 or self.align_temperature <= 0:
            raise ValueError("detail_dim and align_weight must be >= 0, temperature > 0")

    def rs_config_kwargs(self) -> dict[str, Any]:
        """``Dinov2Config`` keyword arguments for an offline (random-init) RS stream."""
        return {**DINOV2_SMALL, **self.rs_overrides}

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON/pickle-safe; tuples become lists)."""
        out = asdict(self)
        out["scales"] = list(self.scales)
        return copy.deepcopy(out)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RSZeroSegConfig:
        """Rebuild a config from :meth:`to_dict` output.

        Args:
            data: The dict; unknown keys are an error (a newer, incompatible config).

        Returns:
            The config.

        Raises:
            ValueError: Unknown keys or invalid values.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown RS-ZeroSeg config keys: {sorted(unknown)}")
        return cls(**copy.deepcopy(dict(data)))
