"""Fixtures for the open-vocabulary tests: a tiny but real open_clip architecture."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import open_clip
import pytest
import torch
from torch import nn

TINY = "rsr-test-tiny-vit"
#: A real open_clip CLIP (ViT image tower, transformer text tower), just very small:
#: 2 vision layers of width 64 (patch 16, 224 px native grid 14x14), 1 text layer.
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_model_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register the tiny config with open_clip (public ``add_model_config``) once."""
    path = tmp_path_factory.mktemp("open_clip_cfg") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return TINY


@pytest.fixture(scope="session")
def make_tiny(tiny_model_name: str) -> Callable[[int], tuple[nn.Module, Callable]]:
    """Builds the tiny model with a given seed (random init, eval mode) and its tokenizer."""

    def make(seed: int = 0) -> tuple[nn.Module, Callable]:
        torch.manual_seed(seed)
        model = open_clip.create_model(tiny_model_name, pretrained=None).eval()
        return model, open_clip.get_tokenizer(tiny_model_name)

    return make


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, offline Hugging Face cache for this process."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache
