"""A compact U-Net trained from scratch (no pretrained weights needed: air-gapped users)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Per-channel mean/std of the [0, 1] input; a fixed, data-independent normalisation.
_MEAN, _STD = 0.45, 0.25


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: small batches and gradient accumulation are the norm here.
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            _norm(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            _norm(cout),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net: ``depth`` downsamplings, channels doubling from ``base_channels``.

    Args:
        num_classes: Output channels (logits).
        base_channels: Channels of the first level.
        depth: Number of 2x downsamplings.
        in_channels: Input channels.

    Input (B, in_channels, H, W) float in [0, 1], any H, W (padded internally); output
    logits (B, num_classes, H, W).
    """

    arch = "unet"

    def __init__(
        self, num_classes: int, base_channels: int = 32, depth: int = 4, in_channels: int = 3
    ) -> None:
        super().__init__()
        self.config = {
            "num_classes": num_classes,
            "base_channels": base_channels,
            "depth": depth,
            "in_channels": in_channels,
        }
        chans = [base_channels * 2**i for i in range(depth + 1)]
        self.stem = _Block(in_channels, chans[0])
        self.down = nn.ModuleList(_Block(chans[i], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            _Block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(chans[0], num_classes, 1)
        self.depth = depth

    def spec(self) -> dict[str, Any]:
        """How to rebuild this model (see :func:`rs_reasoner.models.build.build_model`)."""
        return {"arch": self.arch, **self.config}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes, H, W) of images (B, C, H, W) in [0, 1]."""
        h, w = images.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        x = (images - _MEAN) / _STD
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)[..., :h, :w]
