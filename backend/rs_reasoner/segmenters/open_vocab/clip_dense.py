"""Dense (per-patch) CLIP features for training-free open-vocabulary segmentation.

CLIP's image tower is trained to summarise a whole image in its CLS token; its patch
tokens are spatially noisy because the last block's query-key attention mixes every patch
with a few global "sink" tokens. SegEarth-OV (Li et al., 2025) makes them usable for
segmentation with two training-free changes, both implemented here on open_clip's
:class:`~open_clip.transformer.VisionTransformer`:

* **Self-correlation attention in the last block.** Its attention is replaced by
  ``(softmax(s·q qᵀ) + softmax(s·k kᵀ) + softmax(s·v vᵀ)) v`` with ``s = head_dim^-½``,
  so each patch attends to patches that look like itself; the block's residual
  connection and feed-forward network are dropped. The result goes through ``ln_post``
  and ``proj`` like the normal CLS token, giving one embedding per patch.
* **Global bias alleviation.** Patch embeddings still share an image-level bias, so the
  CLS similarity is subtracted: ``logits = cos(patch, text) - λ · cos(cls, text)``
  (λ = 0.3). :func:`global_bias_logits` computes it.

Where the subtracted CLS embedding comes from is selectable (``cls_source``): ``"dense"``
takes the CLS token of the modified last block, which is what the public SegEarth-OV
implementation subtracts; ``"global"`` takes the CLS embedding of the unmodified forward
pass (CLIP's ordinary image embedding).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from rs_reasoner.weights import WeightSpec

log = logging.getLogger(__name__)

ClsSource = Literal["dense", "global"]
Tokenizer = Callable[[list[str]], torch.Tensor]

_OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def weight_spec_for(model_name: str, pretrained: str) -> tuple[WeightSpec, bool]:
    """The Hub weights open_clip would download for a pretrained tag.

    Args:
        model_name: open_clip architecture name, e.g. ``"ViT-B-16"``.
        pretrained: open_clip pretrained tag, e.g. ``"openai"``.

    Returns:
        The weight spec and whether the tag was trained with QuickGELU (open_clip only
        applies that flag when it resolves the tag itself, so it must be passed on when
        loading the file by path).

    Raises:
        ValueError: open_clip knows no Hub copy for this model and tag.
    """
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    hub = (cfg or {}).get("hf_hub", "")
    if not hub:
        raise ValueError(
            f"open_clip has no Hugging Face Hub weights for {model_name!r} / {pretrained!r}; "
            "pass a local checkpoint file instead."
        )
    parts = hub.strip("/").split("/")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    # Without a file named, open_clip takes the safetensors file where the repo has it,
    # else the pickled one; either counts as these weights.
    spec = WeightSpec(
        repo_id=repo_id,
        filename=filename or _OPEN_CLIP_FILES[0],
        alternatives=() if filename else _OPEN_CLIP_FILES[1:],
        purpose=f"open_clip {model_name} ({pretrained})",
    )
    return spec, bool(cfg.get("quick_gelu", False))


def create_open_clip(
    model_name: str,
    checkpoint: str | Path | None,
    device: str | torch.device = "cpu",
    quick_gelu: bool = False,
) -> tuple[nn.Module, Tokenizer]:
    """Build an open_clip model, from a local checkpoint or randomly initialised.

    Args:
        model_name: open_clip architecture name (``"ViT-B-16"``, ``"ViT-L-14"``, ...).
        checkpoint: Local weights file; ``None`` gives random weights (for tests only:
            a random CLIP segments nothing meaningful).
        device: Torch device.
        quick_gelu: Use QuickGELU activations (OpenAI-trained weights need it).

    Returns:
        The model in eval mode on ``device`` and its tokenizer.
    """
    import open_clip

    if checkpoint is None:
        log.warning("building %s with RANDOM weights (tests only)", model_name)
    model = open_clip.create_model(
        model_name,
        pretrained=str(checkpoint) if checkpoint is not None else None,
        device=device,
        force_quick_gelu=quick_gelu,
    )
    model.eval()
    return model, open_clip.get_tokenizer(model_name)


def self_correlation_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """SegEarth-OV's attention: ``(softmax(s q qᵀ) + softmax(s k kᵀ) + softmax(s v vᵀ)) v``.

    Computed as three fused attention calls (``softmax(s a aᵀ) v`` is exactly
    scaled-dot-product attention with query = key = ``a``), which avoids materialising
    the three L×L maps on GPU.

    Args:
        q, k, v: (..., L, d) per-head queries, keys and values.
        scale: ``s``; default ``d ** -0.5``.

    Returns:
        (..., L, d).
    """
    s = q.shape[-1] ** -0.5 if scale is None else scale
    return sum(F.scaled_dot_product_attention(a, a, v, scale=s) for a in (q, k, v))


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def _last_block_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Self-correlation attention with a block's own projections; x is (B, L, C)."""
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    heads = attn.num_heads
    q, k, v = (_split_heads(t, heads) for t in (q, k, v))
    # open_clip's custom Attention may normalise q/k per head (identity for CLIP models).
    q = getattr(attn, "ln_q", nn.Identity())(q)
    k = getattr(attn, "ln_k", nn.Identity())(k)
    out = self_correlation_attention(q, k, v)
    if getattr(attn, "head_scale", None) is not None:
        out = out * attn.head_scale
    b, _, n, _ = out.shape
    out = out.transpose(1, 2).reshape(b, n, -1)
    out = getattr(attn, "ln_inner", nn.Identity())(out)
    return attn.out_proj(out)


class DenseClipEncoder(nn.Module):
    """Per-patch CLIP embeddings from an open_clip ViT image tower (SegEarth-OV style).

    Args:
        visual: ``clip_model.visual``, an open_clip ``VisionTransformer`` with CLS-token
            pooling (no attentional pooler).
        cls_source: Which CLS embedding to return (see the module docstring).
    """

    def __init__(self, visual: nn.Module, cls_source: ClsSource = "dense") -> None:
        super().__init__()
        from open_clip.transformer import VisionTransformer

        if not isinstance(visual, VisionTransformer):
            raise ValueError(
                f"dense CLIP features need an open_clip VisionTransformer, not "
                f"{type(visual).__name__}"
            )
        if visual.attn_pool is not None:
            raise ValueError("image towers with an attentional pooler are not supported")
        if cls_source not in ("dense", "global"):
            raise ValueError(f"cls_source must be 'dense' or 'global', not {cls_source!r}")
        self.visual = visual
        self.cls_source = cls_source

    @property
    def patch_size(self) -> int:
        """Patch edge in pixels."""
        return int(self.visual.patch_size[0])

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint image-text space."""
        return int(self.visual.proj.shape[1])

    def _positional_embedding(self, gh: int, gw: int) -> torch.Tensor:
        pos = self.visual.positional_embedding
        g0h, g0w = self.visual.grid_size
        if (gh, gw) == (g0h, g0w):
            return pos
        # Other input sizes: resample the learnt patch grid (bicubic, as timm/open_clip do).
        grid = pos[1:].reshape(1, g0h, g0w, -1).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(gh * gw, -1).to(pos.dtype)
        return torch.cat([pos[:1], grid], dim=0)

    def _run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.visual.transformer.batch_first:
            return block(x)
        return block(x.transpose(0, 1)).transpose(0, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed images.

        Args:
            images: (B, 3, H, W) normalised with CLIP's mean/std; H and W multiples of
                the patch size.

        Returns:
            ``(patches, cls)``: (B, H/p, W/p, D) patch embeddings and (B, D) CLS
            embeddings, both in the joint space and not normalised.
        """
        v = self.visual
        p = self.patch_size
        if images.shape[-2] % p or images.shape[-1] % p:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of {p}")
        x = v.conv1(images.to(v.conv1.weight.dtype))
        b, c, gh, gw = x.shape
        x = x.reshape(b, c, gh * gw).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(b, 1, c)
        x = torch.cat([cls, x], dim=1) + self._positional_embedding(gh, gw).to(x.dtype)
        x = v.ln_pre(v.patch_dropout(x))
        blocks = v.transformer.resblocks
        for block in blocks[:-1]:
            x = self._run_block(block, x)
        last = blocks[-1]
        # No residual and no FFN: the attention output alone is the dense feature.
        dense = _last_block_attention(last.attn, last.ln_1(x))
        dense = last.ls_1(getattr(last, "ln_attn", nn.Identity())(dense))
        cls_token = dense[:, 0] if self.cls_source == "dense" else self._run_block(last, x)[:, 0]
        patches = v.ln_post(dense[:, 1:]) @ v.proj
        cls_emb = v.ln_post(cls_token) @ v.proj
        return patches.reshape(b, gh, gw, -1), cls_emb


def global_bias_logits(
    patches: torch.Tensor, cls: torch.Tensor, text: torch.Tensor, lam: float
) -> torch.Tensor:
    """Cosine similarities of patches to texts minus λ times the CLS similarity.

    Args:
        patches: (B, h, w, D) patch embeddings.
        cls: (B, D) CLS embeddings.
        text: (C, D) text embeddings.
        lam: λ; 0 disables the correction.

    Returns:
        (B, C, h, w) float32 ``cos(patch, text) - λ cos(cls, text)``.
    """
    t = F.normalize(text.float(), dim=-1)
    patch_sim = torch.einsum("bhwd,cd->bchw", F.normalize(patches.float(), dim=-1), t)
    cls_sim = F.normalize(cls.float(), dim=-1) @ t.T
    return patch_sim - lam * cls_sim[:, :, None, None]
