"""Fixtures for the reasoning tests: tiny real models and an empty weight cache."""

from __future__ import annotations

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


