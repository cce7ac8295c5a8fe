"""BandStats: robust per-band scaling measured on real rasters, kept in model.json, checked
against the raster to segment; read_bands: raw values and validity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.raster import open_raster
from rs_reasoner.raster.band_stats import CLIP, BandStats, read_bands
from tests.support.rasters import write_geotiff

SLOVENIA = Path("slovenia") / "slovenia_ndvi_68dates_utm33n.tif"


def test_slovenia_stack_all_bands_named_nan_excluded(shared_data: Path) -> None:
    with open_raster(shared_data / SLOVENIA) as ds:
        stats = BandStats.from_raster(ds)
        raw, valid = read_bands(ds, stats.bands)
    assert stats.bands == tuple(range(1, 69))
    assert stats.names[0] == "NDVI 2015-07-11"
    assert all(name.startswith("NDVI 20") for name in stats.names)
    finite = np.isfinite(raw)
    for b in range(68):
        values = raw[b][finite[b]]
        if values.size == 0:  # a date entirely under cloud: a unit range, values stay NaN
            assert (stats.low[b], stats.high[b]) == (0.0, 1.0)
            continue
        # The 2nd and 98th percentiles of the valid values (NaN would make them NaN).
        lo, hi = np.percentile(values, [2, 98])
        assert stats.low[b] == pytest.approx(lo, abs=1e-6)
        assert stats.high[b] == pytest.approx(hi, abs=1e-6)
    norm = stats.normalise(raw, valid)
    assert np.array_equal(np.isnan(norm), ~finite | ~valid[None])
    inside = (norm[finite] >= 0) & (norm[finite] <= 1)
    assert 0.9 < inside.mean() < 1.0  # percentiles 2-98: about 96 % land in [0, 1]


def test_nodata_is_excluded_from_statistics_and_validity(tmp_path: Path) -> None:
    data = np.full((2, 40, 40), 0, np.uint16)  # nodata 0 around a 20x20 block
    data[0, 10:30, 10:30] = np.arange(400, dtype=np.uint16).reshape(20, 20) + 1000
    data[1, 10:30, 10:30] = 5000
    with open_raster(write_geotiff(tmp_path / "nd.tif", data, nodata=0)) as ds:
        raw, valid = read_bands(ds, [1, 2])
        stats = BandStats.from_raster(ds)
    assert valid.sum() == 400 and valid[10:30, 10:30].all()
    assert np.isnan(raw[:, ~valid]).all()
    assert stats.low[0] == pytest.approx(np.percentile(np.arange(400) + 1000, 2))
    # A constant band gets a unit-wide range starting at its value, not a zero division.
    assert (stats.low[1], stats.high[1]) == (5000.0, 5001.0)
    assert stats.dtype == "uint16"


def test_normalise_is_linear_clipped_and_marks_invalid(shared_data: Path) -> None:
    with open_raster(shared_data / "spacenet_atlanta_pan_utm16n.tif") as ds:
        stats = BandStats.from_raster(ds)
        raw, valid = read_bands(ds, [1])
    norm = stats.normalise(raw, valid)
    expected = (raw.astype(np.float64) - stats.low[0]) / (stats.high[0] - stats.low[0])
    np.testing.assert_allclose(norm, np.clip(expected, *CLIP), rtol=1e-5, atol=1e-6)
    invalid = np.zeros_like(valid)
    invalid[:5] = True
    assert np.isnan(stats.normalise(raw, valid & ~invalid)[:, :5]).all()
    with pytest.raises(ValueError, match="2 bands given"):
        stats.normalise(np.concatenate([raw, raw]))


def test_round_trip_through_json_and_bad_documents(shared_data: Path) -> None:
    with open_raster(shared_data / SLOVENIA) as ds:
        stats = BandStats.from_raster(ds, [3, 1, 2])
    assert stats.bands == (3, 1, 2) and stats.names[1] == "NDVI 2015-07-11"
    again = BandStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert again == stats
    doc = stats.to_dict()
    with pytest.raises(ValueError, match="differ in length"):
        BandStats.from_dict({**doc, "low": doc["low"][:2]})
    with pytest.raises(ValueError, match="low < high"):
        BandStats.from_dict({**doc, "high": doc["low"]})
    with pytest.raises(ValueError, match="invalid band statistics"):
        BandStats.from_dict({"bands": [1]})


def test_check_raster_refuses_missing_bands_and_notes_renamed_ones(
    shared_data: Path, tmp_path: Path
) -> None:
    with open_raster(shared_data / SLOVENIA) as ds:
        stats = BandStats.from_raster(ds)
    pan = shared_data / "spacenet_atlanta_pan_utm16n.tif"
    with open_raster(pan) as ds, pytest.raises(InvalidRequestError, match="reads 68 band") as err:
        stats.check_raster(ds, "model 'lulc'")
    assert "this raster has 1" in err.value.message
    assert "NDVI 2015-07-11" in err.value.message and "same 68 bands" in err.value.hint
    other = write_geotiff(tmp_path / "s2.tif", np.zeros((68, 8, 8), np.float32))
    with open_raster(other) as ds:
        assert stats.check_raster(ds) == []  # no descriptions here: nothing to compare
    with rasterio.open(other, "r+") as dst:
        dst.set_band_description(2, "B03")
    with open_raster(other) as ds:
        notes = stats.check_raster(ds)
    assert notes == ["Band 2 is 'B03' here but was 'NDVI 2015-07-31' in training."]


def test_band_numbers_are_checked(shared_data: Path) -> None:
    missing = pytest.raises(InvalidRequestError, match=r"Band\(s\) \[4\] do not exist")
    with open_raster(shared_data / "landsat_rgb_utm18n.tif") as ds, missing:
        BandStats.from_raster(ds, [1, 4])
