"""Training tests share 2 CPU cores with other work: one torch thread avoids
oversubscription stalls and keeps runs reproducible. ``offline_weights`` hides any
locally cached model weights, so "use X when its weights are here" choices are fixed."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline_weights(tmp_path_factory, monkeypatch):
    """No model weights on this machine: an empty, offline Hugging Face cache and no
    RS_REASONER_WEIGHTS_* overrides, so choices that depend on local weights are fixed."""
    import os

    from huggingface_hub import constants

    cache = tmp_path_factory.mktemp("hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for name in list(os.environ):
        if name.startswith("RS_REASONER_WEIGHTS_"):
            monkeypatch.delenv(name)
    return cache
