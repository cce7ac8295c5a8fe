"""Models trainable here: the backend's architectures (:mod:`rs_reasoner.models`) and what
training adds around them (:mod:`.rs_zeroseg`: backbone check, crop size, a fresh
RS-ZeroSeg; imported only when used, it loads open_clip and transformers).
"""

from __future__ import annotations

from rs_reasoner.models.build import MODELS, build_model
from rs_reasoner.models.unet import UNet

__all__ = ["MODELS", "UNet", "build_model"]
