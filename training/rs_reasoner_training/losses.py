"""The two losses of teacher-student training."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from rs_reasoner_training.data.dataset import IGNORE_INDEX

#: A supervised loss: ``(logits (B, C, H, W), labels (B, H, W)) -> scalar``.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def supervised_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled pixels (0, not NaN, when a batch has none)."""
    if not bool((labels != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


def unsupervised_ce(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Per-pixel weighted cross-entropy, summed and divided by the valid pixel count."""
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    w = weights * valid.to(weights.dtype)
    return (ce * w).sum() / valid.sum().clamp(min=1)
