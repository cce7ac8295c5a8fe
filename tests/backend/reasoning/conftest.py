"""Fixtures for the reasoning tests: tiny real models and an empty weight cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from rs_reasoner.segmenters.reasoning.sam import SamRefiner
from rs_reasoner.segmenters.reasoning.tiny_qwen import tiny_processor, tiny_qwen


@pytest.fixture(scope="session")
def qwen_parts() -> tuple[Any, Any]:
    """(model, processor): the tiny random Qwen2.5-VL, built once."""
    processor = tiny_processor()
    return tiny_qwen(processor), processor


@pytest.fixture(scope="session")
def small_input_sam() -> SamRefiner:
    """Random SAM 2.1 hiera-tiny with a 256-px input (same modules, cheaper on CPU)."""
    return SamRefiner.random_init("tiny", image_size=256)


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, offline Hugging Face cache and no local weight overrides."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for key in list(os.environ):
        if key.startswith("RS_REASONER_WEIGHTS_"):
            monkeypatch.delenv(key)
    return cache
