"""Scoring models on held-out tiles: confusion matrices, then mIoU and per-class IoU."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from rs_reasoner_training.data.dataset import TileDataset
from rs_reasoner_training.devices import autocast
from rs_reasoner_training.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: TileDataset,
    num_classes: int,
    device: torch.device,
    batch_size: int = 8,
    amp: bool = True,
    workers: int = 0,
) -> torch.Tensor:
    """Confusion matrix of a model on labelled tiles (whole tiles, no augmentation).

    Returns:
        (C, C) int64, rows true class, columns predicted.
    """
    return evaluate_all([model], dataset, num_classes, device, batch_size, amp, workers)[0]


@torch.no_grad()
def evaluate_all(
    models: Sequence[nn.Module],
    dataset: TileDataset,
    num_classes: int,
    device: torch.device,
    batch_size: int = 8,
    amp: bool = True,
    workers: int = 0,
) -> list[torch.Tensor]:
    """:func:`evaluate` for several models (student and teacher) in one pass over the tiles.

    Returns:
        One (C, C) int64 confusion matrix per model, in order.
    """
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    cms = [torch.zeros(num_classes, num_classes, dtype=torch.int64) for _ in models]
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    for batch in loader:
        images = batch["image"].to(device)
        for m, cm in zip(models, cms, strict=True):
            with autocast(device, amp):
                logits = m(images)
            cm += confusion_matrix(logits.argmax(1).cpu(), batch["label"], num_classes)
    for m, mode in zip(models, modes, strict=True):
        m.train(mode)
    return cms


def scores(cm: torch.Tensor, class_names: list[str]) -> dict[str, Any]:
    """``miou``, ``pixel_accuracy`` and per-class ``iou`` of a confusion matrix (None where
    undefined, so the result is valid JSON)."""
    iou = iou_per_class(cm).tolist()
    return {
        "miou": _finite(mean_iou(cm)),
        "pixel_accuracy": _finite(pixel_accuracy(cm)),
        "iou": {n: _finite(v) for n, v in zip(class_names, iou, strict=True)},
    }


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
