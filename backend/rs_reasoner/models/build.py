"""Architectures by name: a checkpoint's ``model_spec`` (``{"arch": name, **kwargs}``)
rebuilt into its network.

``"unet"``: :class:`~rs_reasoner.models.unet.UNet`; ``"rs-zeroseg"``:
:class:`~rs_reasoner.models.rs_zeroseg_classes.RSZeroSegModel` (imported only when used:
it loads open_clip and transformers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from rs_reasoner.models.unet import UNet


def _rs_zeroseg(**kwargs: Any) -> nn.Module:
    from rs_reasoner.models.rs_zeroseg_classes import RSZeroSegModel

    return RSZeroSegModel(**kwargs)


#: arch name -> constructor taking the spec's other keys.
MODELS: dict[str, Callable[..., nn.Module]] = {"unet": UNet, "rs-zeroseg": _rs_zeroseg}


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Build a model from ``{"arch": name, **kwargs}`` (e.g. ``UNet(...).spec()``).

    Raises:
        KeyError: Unknown arch.
    """
    kwargs = dict(spec)
    arch = kwargs.pop("arch")
    if arch not in MODELS:
        raise KeyError(f"unknown model arch {arch!r}; known: {', '.join(MODELS)}")
    return MODELS[arch](**kwargs)
