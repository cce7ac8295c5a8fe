"""Where training runs: the backend's device rules (:mod:`rs_reasoner.device`, one ``auto``
rule and one mixed-precision rule for serving and training), as torch devices."""

from __future__ import annotations

import torch

from rs_reasoner import device as _device
from rs_reasoner.device import autocast

__all__ = ["autocast", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU (:func:`rs_reasoner.device.resolve_device`)."""
    return torch.device(_device.resolve_device(name))
