"""Test-wide set-up: register the test-only segmenters in this process and in children."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RS_REASONER_SEGMENTER_MODULES", "tests.support.segmenters")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real sample rasters beside the repository (see its README)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data folder {SHARED_DATA} is missing")
    return SHARED_DATA


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
