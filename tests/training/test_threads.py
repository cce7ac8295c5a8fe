"""``threads``: a training run uses that many torch, GDAL and LightGBM threads, and gives
torch its setting back afterwards (crops of the real Dubai sample)."""

from __future__ import annotations

import json

import pytest
import rasterio
import torch

from rs_reasoner_training.api import train_on_folders
from tests.support.mask_folders import write_dubai_crops

SMALL = dict(epochs=1, batch_size=4, base_channels=8, depth=2, steps_per_epoch=2,
             device="cpu", progress_bar=False, tile_size=128)  # fmt: skip


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "dubai").is_dir():
        pytest.skip("sample data missing")
    return write_dubai_crops(SHARED_DATA / "dubai", tmp_path_factory.mktemp("crops"))


def test_torch_and_gdal_run_with_the_threads_given_then_torch_gets_its_own_back(
    crops, tmp_path
) -> None:
    torch.set_num_threads(2)
    seen: list[tuple[int, str | None]] = []

    def callback(stage: str, fraction: float, message: str | None) -> None:
        seen.append((torch.get_num_threads(), rasterio.env.getenv().get("GDAL_NUM_THREADS")))

    train_on_folders(crops["images"], crops["masks"], crops["classes"], tmp_path / "net",
                     model="unet", threads=1, callback=callback, **SMALL)  # fmt: skip
    assert len(seen) > 3 and set(seen) == {(1, "1")}
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("threads", [2])  # LightGBM is left at its default otherwise
def test_the_classical_learner_trains_with_the_threads_given(crops, tmp_path, threads) -> None:
    train_on_folders(crops["images"], crops["masks"], crops["classes"], tmp_path,
                     model="classical", threads=threads, tile_size=128)  # fmt: skip
    booster = json.loads((tmp_path / "classical.json").read_text())
    assert f"[num_threads: {threads}]" in json.dumps(booster)
