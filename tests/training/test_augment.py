"""Augmentations keep images, labels and masks aligned."""

from __future__ import annotations

import torch

from rs_reasoner_training.augment import (
    apply_cutmix,
    cutmix_boxes,
    gaussian_blur,
    strong_photometric,
    weak_augment,
)


def test_weak_augment_moves_labels_with_pixels():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (6, 16, 16))
    images = (labels.float() / 10).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    valid = labels > 0
    for crop in (None, 10):
        x, y, v = weak_augment(images, labels, valid, g, crop)
        assert torch.equal((x[:, 0] * 10).round().long(), y)
        assert torch.equal(v, y > 0)
        assert x.shape[-1] == (crop or 16)


def test_strong_photometric_keeps_range_and_cutmix_mixes_aligned():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 20, 20)
    s = strong_photometric(x, g, p_jitter=1.0, p_blur=1.0)
    assert s.shape == x.shape and s.min() >= 0 and s.max() <= 1
    boxes = cutmix_boxes(4, 20, 20, g, p=1.0)
    assert boxes.flatten(1).any(1).all()
    labels = torch.arange(4).view(4, 1, 1).expand(4, 20, 20)
    mixed_x, mixed_y = apply_cutmix(x, boxes), apply_cutmix(labels, boxes)
    for b in range(4):
        assert torch.equal(mixed_y[b][boxes[b]], labels[3 - b][boxes[b]])
        assert torch.equal(mixed_y[b][~boxes[b]], labels[b][~boxes[b]])
        assert torch.equal(mixed_x[b][:, boxes[b]], x[3 - b][:, boxes[b]])
    assert not cutmix_boxes(4, 20, 20, g, p=0.0).any()
    flat = torch.full((3, 9, 9), 0.5)
    assert torch.allclose(gaussian_blur(flat, 1.5), flat)
