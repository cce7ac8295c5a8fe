"""Segmentation metrics from a confusion matrix (rows: true class, columns: predicted)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from rs_reasoner_training.data.dataset import IGNORE_INDEX


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Count (true, predicted) pairs over labelled pixels.

    Args:
        pred: Predicted class ids, any shape.
        target: True class ids, same shape; ``ignore_index`` pixels are skipped.
        num_classes: Number of classes.
        ignore_index: Label of unlabelled pixels.

    Returns:
        (num_classes, num_classes) int64 counts, on the CPU.
    """
    keep = target != ignore_index
    t = target[keep].long().cpu()
    p = pred[keep].long().cpu()
    idx = t * num_classes + p
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """IoU = TP / (TP + FP + FN) per class; NaN for a class absent from truth and prediction.

    Args:
        confusion: (C, C) counts, rows true, columns predicted.

    Returns:
        (C,) float64 IoU.
    """
    cm = confusion.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean IoU over classes that occur (in truth or prediction); NaN if none."""
    iou = iou_per_class(confusion)
    valid = ~torch.isnan(iou)
    return float(iou[valid].mean()) if valid.any() else float("nan")


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Fraction of labelled pixels predicted right; NaN with no labelled pixel."""
    total = confusion.sum()
    return float(confusion.diag().sum() / total) if total > 0 else float("nan")


def region_counts(labels: np.ndarray, num_classes: int, min_pixels: int = 16) -> np.ndarray:
    """Connected regions of each class in a label map (regions under ``min_pixels`` left
    out): how many parcels a validation set really holds.

    Args:
        labels: (H, W) class ids, :data:`IGNORE_INDEX` where unlabelled.
        num_classes: Number of classes.
        min_pixels: Smallest region counted.

    Returns:
        (num_classes,) int64 counts.
    """
    counts = np.zeros(num_classes, np.int64)
    for c in range(num_classes):
        regions, n = ndimage.label(labels == c)
        if n:
            sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:]
            counts[c] = int((sizes >= min_pixels).sum())
    return counts
