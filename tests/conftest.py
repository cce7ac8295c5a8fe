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
