"""Exponential moving average (EMA) teacher."""

from __future__ import annotations

import torch
from torch import nn


def ema_decay(step: int, max_decay: float = 0.996) -> float:
    """Decay at optimizer step ``step`` (0-based): ``min(1 - 1/(step+1), max_decay)``.

    The ramp makes the teacher follow the student closely at first (step 0 copies it),
    then average over ~1/(1-max_decay) steps, as in UniMatch/SemiEarth.
    """
    return min(1.0 - 1.0 / (step + 1), max_decay)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """``teacher = decay * teacher + (1 - decay) * student``, in place.

    Parameters and floating-point buffers (e.g. BatchNorm statistics) are averaged;
    integer buffers (BatchNorm's step counter) are copied. Parameters frozen in both
    models are skipped: they never change, and large frozen backbones make up most of
    an RS-ZeroSeg.

    Args:
        teacher: The EMA model (same architecture as ``student``).
        student: The trained model.
        decay: Weight of the teacher's current values, in [0, 1].
    """
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        if not s.requires_grad and not t.requires_grad:
            continue  # frozen in both (e.g. pretrained backbones): equal, nothing to average
        t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        if t.dtype.is_floating_point:
            t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)
        else:
            t.copy_(s)
