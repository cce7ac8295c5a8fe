"""The two losses of teacher-student training."""

from __future__ import annotations

from collections.abc import Callable, Sized

import torch
import torch.nn.functional as F

from rs_reasoner_training.data.dataset import IGNORE_INDEX

#: A supervised loss: ``(logits (B, C, H, W), labels (B, H, W)) -> scalar``.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def supervised_ce(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over labelled pixels (0, not NaN, when a batch has none), optionally
    with a weight per class."""
    if not bool((labels != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    if weight is not None:
        weight = weight.to(device=logits.device, dtype=torch.float32)
    return F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=IGNORE_INDEX)


def class_frequency_weights(
    dataset: Sized, num_classes: int, power: float, *, max_tiles: int = 64, seed: int = 0
) -> torch.Tensor | None:
    """Per-class weights ``frequency ** -power`` from the labels of some tiles.

    Args:
        dataset: Labelled tiles (items with a ``label`` tensor).
        num_classes: Number of classes.
        power: 0 for no weighting (returns None), 1 for fully balanced classes.
        max_tiles: Tiles read at most (a seeded sample): frequencies need no more.
        seed: Sample seed.

    Returns:
        (num_classes,) float32 weights with mean 1 over the pixels counted (a class seen
        in no tile gets the largest weight), or None.
    """
    if power <= 0 or len(dataset) == 0:
        return None
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=g)[:max_tiles].tolist()
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for i in order:
        labels = dataset[i]["label"]
        labels = labels[labels != IGNORE_INDEX]
        counts += torch.bincount(labels.flatten(), minlength=num_classes)[:num_classes]
    if counts.sum() == 0:
        return None
    freq = counts / counts.sum()
    seen = freq > 0
    weight = torch.zeros(num_classes, dtype=torch.float64)
    weight[seen] = freq[seen] ** -float(power)
    weight[~seen] = weight[seen].max()
    weight /= (weight * freq).sum()  # mean weight over the labelled pixels: 1
    return weight.float()


def unsupervised_ce(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Per-pixel weighted cross-entropy, summed and divided by the valid pixel count."""
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    w = weights * valid.to(weights.dtype)
    return (ce * w).sum() / valid.sum().clamp(min=1)
