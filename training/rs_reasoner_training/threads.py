"""How many CPU threads a training run uses (``rs-reasoner train --threads``).

One number bounds the three thread pools training uses: torch's intra-op pool (set for
the run, restored after), GDAL's (``GDAL_NUM_THREADS`` while reading rasters) and
LightGBM's (the classical learner's ``num_threads``, passed by the caller). On a shared
machine this keeps one run from taking every core.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def limit_threads(threads: int | None) -> Iterator[None]:
    """Run the block with at most ``threads`` torch and GDAL threads (None: no limit).

    Args:
        threads: Thread count (>= 1), or None to leave the defaults (all cores).
    """
    if threads is None:
        yield
        return
    import rasterio
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        with rasterio.Env(GDAL_NUM_THREADS=str(int(threads))):
            yield
    finally:
        torch.set_num_threads(before)
