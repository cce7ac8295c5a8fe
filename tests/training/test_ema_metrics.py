"""EMA teacher update and confusion-matrix metrics, exact on constructed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rs_reasoner_training.ema import ema_decay, ema_update
from rs_reasoner_training.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))


def test_ema_update_is_exact():
    teacher, student = _net(), _net()
    for p in teacher.parameters():
        nn.init.constant_(p, 2.0)
    for p in student.parameters():
        nn.init.constant_(p, 4.0)
    student[1].running_mean.fill_(8.0)
    teacher[1].running_mean.fill_(0.0)
    student[1].num_batches_tracked.fill_(7)
    ema_update(teacher, student, 0.5)
    for p in teacher.parameters():
        assert torch.equal(p, torch.full_like(p, 3.0))  # 0.5*2 + 0.5*4, exact in binary
    assert torch.equal(teacher[1].running_mean, torch.full((3,), 4.0))
    assert int(teacher[1].num_batches_tracked) == 7  # integer buffers are copied
    # General decay: teacher = d*t + (1-d)*s.
    t0 = [p.clone() for p in teacher.parameters()]
    for p in student.parameters():
        p.data.normal_()
    ema_update(teacher, student, 0.9)
    for p, old, s in zip(teacher.parameters(), t0, student.parameters(), strict=True):
        assert torch.allclose(p, 0.9 * old + 0.1 * s, rtol=0, atol=1e-6)
    # Decay 0 copies the student; decay 1 keeps the teacher.
    ema_update(teacher, student, 0.0)
    pairs = zip(teacher.parameters(), student.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_ema_decay_ramp():
    assert ema_decay(0) == 0.0
    assert ema_decay(1) == 0.5
    assert ema_decay(9) == pytest.approx(0.9)
    assert ema_decay(10_000) == 0.996
    assert ema_decay(10_000, max_decay=0.99) == 0.99


def test_confusion_and_iou_exact():
    target = torch.tensor([0, 0, 0, 1, 1, 2, 255, 255])
    pred = torch.tensor([0, 0, 1, 1, 0, 2, 2, 1])
    cm = confusion_matrix(pred, target, 4)
    expected = torch.tensor([[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(cm, expected)
    iou = iou_per_class(cm)
    # class 0: TP 2, FP 1, FN 1 -> 2/4; class 1: TP 1, FP 1, FN 1 -> 1/3; class 2: 1/1
    assert iou[:3].tolist() == pytest.approx([0.5, 1 / 3, 1.0])
    assert math.isnan(iou[3])  # absent in truth and prediction
    assert mean_iou(cm) == pytest.approx((0.5 + 1 / 3 + 1.0) / 3)
    assert pixel_accuracy(cm) == pytest.approx(4 / 6)


def test_predicted_but_absent_class_counts_as_zero_iou():
    cm = confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 0]), 2)
    assert iou_per_class(cm).tolist() == [0.0, 0.0]
    assert mean_iou(cm) == 0.0
    empty = confusion_matrix(torch.tensor([1]), torch.tensor([255]), 2)
    assert math.isnan(mean_iou(empty)) and math.isnan(pixel_accuracy(empty))
