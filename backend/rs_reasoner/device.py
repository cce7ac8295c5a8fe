"""Where models run: resolving ``auto`` to a torch device, and mixed precision on it.

One helper of each for the segmenters, the pipeline and training. Torch is imported
inside the functions: the pipeline is planned, and requests are checked, without it.
"""

from __future__ import annotations

import contextlib
from typing import Any


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a CUDA GPU is usable, else ``cpu``; other names unchanged.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        A torch device string (``cpu`` when torch is not installed).
    """
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast(device: Any, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (fp16 where the GPU has no bf16); nothing elsewhere.

    CPU stays fp32: bf16 is slow there, and the models were validated in fp32 on CPU.

    Args:
        device: A torch device or device string.
        enabled: False gives a no-op (e.g. training with ``amp`` off).

    Returns:
        A context manager.
    """
    kind = getattr(device, "type", None) or str(device).partition(":")[0]
    if not enabled or kind != "cuda":
        return contextlib.nullcontext()
    import torch

    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)
