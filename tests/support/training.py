"""Shared set-up of the training tests: small fast runs on this CPU."""

from __future__ import annotations

import pytest

#: A small U-Net trained on 64-px tiles: a 2-epoch run on the NEON parcels takes seconds.
SMALL_UNET = {"model": "unet", "base_channels": 8, "depth": 2, "batch_size": 4}
CLI_SMALL_UNET = ["--model", "unet"] + [
    f"--train-option={k}={v}" for k, v in SMALL_UNET.items() if k != "model"
]
NEON = "neon_osbs_rgb_10cm_utm17n.tif"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: the test machine's cores are shared, and oversubscribed threads
    make CPU training many times slower. Import it into a test module to apply it there."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
