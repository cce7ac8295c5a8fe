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


def test_multi_band_photometric_is_per_image_gain_and_offset_unclamped():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 68, 12, 12) * 2  # normalised bands run outside [0, 1]
    out = strong_photometric(x, g, p_jitter=1.0, p_grey=1.0, p_blur=0.0)
    assert out.shape == x.shape
    assert out.min() < 0 and out.max() > 1  # nothing clamped
    for a, b in zip(x, out, strict=True):
        # brightness * contrast then a shift: one affine map for all 68 bands of an image
        fit = torch.linalg.lstsq(torch.stack([a.flatten(), torch.ones(a.numel())], 1),
                                 b.flatten().unsqueeze(1)).solution  # fmt: skip
        pred = a.flatten() * fit[0] + fit[1]
        assert torch.allclose(pred, b.flatten(), atol=1e-4)


def test_blur_of_many_bands_blurs_each_band_alike():
    x = torch.zeros(68, 15, 15)
    x[:, 7, 7] = torch.arange(1, 69).float()
    y = gaussian_blur(x, 1.0)
    assert y.shape == x.shape
    torch.testing.assert_close(y[10] / 11.0, y[0])  # same kernel on every band
