"""Training objective of RS-ZeroSeg: ``L = L_BCE + λ · L_align`` (paper Eqs. 11-13).

**Targets.** A (B, H, W) integer map in the :class:`~rs_reasoner.segmenters.base.TileResult`
convention: 0 = background (negative for every queried class), ``k`` in 1..C = class
``k - 1`` of the text embeddings, ``ignore_index`` (255) = unlabeled / NoData, which
contributes to neither term.

**L_BCE** is the per-pixel binary cross-entropy of each class's mask logit against the
one-hot target, averaged over valid pixels and the C classes (Eq. 11).

**L_align** (Eq. 12). The paper asks that the average-pooled F_MSCAM be close to the text
embeddings "or, contrastively, individual category embeddings and their visual
regions"; we use the contrastive, region-level form. F_MSCAM is projected into the text
space (``align_embeddings``); for each image and each class present in it, the
embeddings are averaged over the class's ground-truth region (area-weighted at the
feature resolution, ignoring unlabeled pixels), L2-normalised, and compared to all C
class text embeddings: ``logits = s · cos(region, text_j)`` with the learnable scale
``s`` (CLIP-style, initial 1/0.07). The loss is the cross-entropy of these logits with
the region's own class (InfoNCE over the queried vocabulary), averaged over regions.
With a single class there is nothing to contrast, so the cosine distance
``1 - cos(region, text)`` is used. Regions smaller than ``min_region`` feature pixels are
skipped; with no region the term is 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = 255


def one_hot_targets(
    targets: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot class targets and the valid mask.

    Args:
        targets: (B, H, W) integer labels (0 background, 1..C classes, ignore_index).
        num_classes: C.
        ignore_index: Label of pixels to ignore.

    Returns:
        ``(onehot, valid)``: (B, C, H, W) float and (B, H, W) bool.

    Raises:
        ValueError: A label outside 0..C that is not ``ignore_index``.
    """
    valid = targets != ignore_index
    labels = targets[valid]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > num_classes):
        raise ValueError(f"target labels must be in 0..{num_classes} or {ignore_index}")
    classes = torch.arange(1, num_classes + 1, device=targets.device).view(1, -1, 1, 1)
    onehot = (targets.unsqueeze(1) == classes) & valid.unsqueeze(1)
    return onehot.float(), valid


def bce_loss(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Per-pixel BCE over classes, mean over valid pixels × classes (Eq. 11).

    Args:
        logits: (B, C, H, W) mask logits.
        targets: (B, H, W) labels.
        ignore_index: Label of pixels to ignore.

    Returns:
        Scalar loss (0 with a graph when no pixel is valid).
    """
    onehot, valid = one_hot_targets(targets, logits.shape[1], ignore_index)
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), onehot, reduction="none")
    weight = valid.unsqueeze(1).to(per_pixel.dtype)
    denom = weight.sum() * logits.shape[1]
    return (per_pixel * weight).sum() / denom.clamp(min=1.0)


def alignment_loss(
    align_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    targets: torch.Tensor,
    logit_scale: torch.Tensor | float = 1 / 0.07,
    ignore_index: int = IGNORE_INDEX,
    min_region: float = 1.0,
) -> torch.Tensor:
    """Contrastive region-text alignment (see the module docstring).

    Args:
        align_embeddings: (B, D, h, w) F_MSCAM projected to the text space.
        text_embeddings: (C, D) class text embeddings.
        targets: (B, H, W) labels at image resolution.
        logit_scale: Multiplier of the cosine logits.
        ignore_index: Label of pixels to ignore.
        min_region: Least region mass (in feature pixels) for a region to count.

    Returns:
        Scalar loss.
    """
    c = text_embeddings.shape[0]
    onehot, _ = one_hot_targets(targets, c, ignore_index)
    size = tuple(align_embeddings.shape[-2:])
    # Fraction of each feature pixel covered by each class (area pooling).
    weights = F.adaptive_avg_pool2d(onehot, size)
    mass = weights.sum(dim=(2, 3))  # (B, C)
    present = mass >= min_region
    if not bool(present.any()):
        return align_embeddings.sum() * 0.0
    emb = align_embeddings.float()
    pooled = torch.einsum("bchw,bdhw->bcd", weights, emb) / mass.clamp(min=1e-6)[..., None]
    regions = F.normalize(pooled[present], dim=-1)  # (R, D)
    text = F.normalize(text_embeddings.float(), dim=-1)
    cls = torch.arange(c, device=targets.device).expand_as(present)[present]  # (R,)
    if c == 1:
        return (1 - (regions * text[cls]).sum(-1)).mean()
    return F.cross_entropy(logit_scale * regions @ text.T, cls)


class RSZeroSegLoss(nn.Module):
    """``L_BCE + λ L_align`` on the outputs of :class:`~.model.RSZeroSeg`.

    Args:
        align_weight: λ (paper: 0.2).
        ignore_index: Label of pixels to ignore.
        min_region: See :func:`alignment_loss`.
    """

    def __init__(
        self, align_weight: float = 0.2, ignore_index: int = IGNORE_INDEX, min_region: float = 1.0
    ) -> None:
        super().__init__()
        self.align_weight = align_weight
        self.ignore_index = ignore_index
        self.min_region = min_region

    def forward(
        self, outputs: dict[str, torch.Tensor], targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Compute the loss and its parts.

        Args:
            outputs: Model outputs (``logits``; for the alignment term also
                ``align_embeddings``, ``text_embeddings`` and ``logit_scale``).
            targets: (B, H, W) labels.

        Returns:
            ``loss`` (total), ``bce`` and ``align`` (unweighted); ``align`` is 0 when the
            outputs carry no alignment embeddings or λ is 0.
        """
        bce = bce_loss(outputs["logits"], targets, self.ignore_index)
        if self.align_weight > 0 and "align_embeddings" in outputs:
            align = alignment_loss(
                outputs["align_embeddings"],
                outputs["text_embeddings"],
                targets,
                outputs.get("logit_scale", 1 / 0.07),
                self.ignore_index,
                self.min_region,
            )
        else:
            align = bce.new_zeros(())
        return {"loss": bce + self.align_weight * align, "bce": bce, "align": align}
