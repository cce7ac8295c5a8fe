"""Multi-band training tiles: the 68-band Slovenia NDVI stack trains a U-Net on every band
and the checkpoint rebuilds with 68 input channels and the band normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.models.checkpoint import load_trained_model
from rs_reasoner.raster import open_raster
from rs_reasoner.raster.band_stats import BandStats, read_bands
from rs_reasoner_training.api import ModelChoice, initial_model, train_model
from rs_reasoner_training.data.band_arrays import BandArraySource, normalised_tile_image
from rs_reasoner_training.data.dataset import (
    IGNORE_INDEX,
    TileDataset,
    TileRef,
    TrainingData,
    grid_refs,
)
from rs_reasoner_training.data.parcels import label_raster
from tests.training.helpers import QUICK_RUN


@pytest.fixture(scope="module")
def slovenia():
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "slovenia"
    if not root.is_dir():
        pytest.skip("shared Slovenia sample missing")
    raster = root / "slovenia_ndvi_68dates_utm33n.tif"
    label, parcels = label_raster(raster, root / "slovenia_lulc.gpkg", "LULC_NAME")
    with open_raster(raster) as ds:
        raw, valid = read_bands(ds, range(1, 69))
        stats = BandStats.from_raster(ds)
    return raw, valid, label, parcels.class_names, stats


def test_tiles_are_normalised_bands_without_nan(slovenia) -> None:
    raw, valid, label, names, stats = slovenia
    source = BandArraySource([raw], [valid], {"train": [label]}, stats)
    sample = source.read(TileRef(0, 90, 90, 32), "train")  # runs past the edge: padded
    assert sample.image.shape == (32, 32, 68) and sample.image.dtype == np.float32
    assert np.isfinite(sample.image).all()
    expected = np.nan_to_num(stats.normalise(raw[:, 90:, 90:], valid[90:, 90:]))
    np.testing.assert_array_equal(sample.image[:11, :10], np.moveaxis(expected, 0, -1))
    assert not sample.valid[11:].any() and not sample.image[11:].any()
    assert (sample.label[~sample.valid] == IGNORE_INDEX).all()
    item = TileDataset(source, [TileRef(0, 0, 0, 32)], "train")[0]
    assert item["image"].shape == (68, 32, 32)  # float bands are not divided by 255
    np.testing.assert_allclose(
        item["image"].numpy(), np.moveaxis(normalised_tile_image(raw, valid, stats), -1, 0)[
            :, :32, :32]
    )  # fmt: skip


def test_a_unet_trains_on_all_68_bands(slovenia, tmp_path: Path) -> None:
    raw, valid, label, names, stats = slovenia
    west = np.zeros(valid.shape, bool)
    west[:, :50] = True
    maps = {"train": [np.where(west, label, IGNORE_INDEX).astype(np.uint8)],
            "val": [np.where(~west, label, IGNORE_INDEX).astype(np.uint8)]}  # fmt: skip
    source = BandArraySource([raw], [valid], maps, stats)
    refs = grid_refs(0, *valid.shape, 32)
    data = TrainingData(
        class_names=names,
        labelled=TileDataset(source, [r for r in refs if r.col < 50], "train"),
        val=TileDataset(source, [r for r in refs if r.col >= 50], "val"),
        summary={"tile_size": 32, "band_stats": stats.to_dict()},
    )
    assert data.in_channels == 68
    result = train_model(data, tmp_path, epochs=1, semi_supervised=False, verifier="none",
                         **QUICK_RUN)  # fmt: skip
    model, classes, meta = load_trained_model(result.best_path)
    assert classes == names and model.config["in_channels"] == 68
    assert BandStats.from_dict(meta["data"]["band_stats"]) == stats
    image = normalised_tile_image(raw, valid, stats)
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.moveaxis(image, -1, 0)).unsqueeze(0))
    assert logits.shape == (1, len(names), *valid.shape)


def test_rs_zeroseg_refuses_other_than_three_bands() -> None:
    choice = ModelChoice("rs-zeroseg", False, "test")
    with pytest.raises(InvalidRequestError, match="reads 3 bands"):
        initial_model(choice, ["a", "b"], crop=32, in_channels=68)
