"""Training tests share 2 CPU cores with other work: one torch thread avoids
oversubscription stalls and keeps runs reproducible."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
