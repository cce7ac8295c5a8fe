"""select_bands: RGB by colour interpretation, else the first three, else one band ×3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.enums import ColorInterp as CI

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.raster import open_raster, select_bands
from tests.support.rasters import write_geotiff

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def raster(tmp_path: Path, bands: int, colorinterp=None, dtype="uint16"):
    data = np.zeros((bands, 16, 16), dtype=dtype)
    return open_raster(write_geotiff(tmp_path / f"r{bands}.tif", data, colorinterp=colorinterp))


@pytest.mark.parametrize(
    ("colorinterp", "expected"),
    [
        ([CI.red, CI.green, CI.blue, CI.undefined], [1, 2, 3]),  # R, G, B, NIR
        ([CI.undefined, CI.red, CI.green, CI.blue], [2, 3, 4]),  # NIR first
        ([CI.blue, CI.green, CI.red, CI.undefined], [3, 2, 1]),  # BGR order on disk
        ([CI.undefined] * 4, [1, 2, 3]),  # nothing declared: the first three
        ([CI.alpha, CI.undefined, CI.undefined, CI.undefined], [2, 3, 4]),  # alpha skipped
    ],
)
def test_default_choice_on_four_bands(tmp_path: Path, colorinterp, expected) -> None:
    with raster(tmp_path, 4, colorinterp) as ds:
        assert select_bands(ds) == expected


def test_fewer_than_three_bands_replicate_the_first(tmp_path: Path) -> None:
    with raster(tmp_path, 1) as ds:
        assert select_bands(ds) == [1, 1, 1]
    with raster(tmp_path, 2) as ds:
        assert select_bands(ds) == [1, 1, 1]
    with raster(tmp_path, 2, [CI.gray, CI.alpha], dtype="uint8") as ds:
        assert select_bands(ds) == [1, 1, 1]


def test_user_bands(tmp_path: Path) -> None:
    with raster(tmp_path, 4, [CI.red, CI.green, CI.blue, CI.undefined]) as ds:
        assert select_bands(ds, [4]) == [4, 4, 4]
        assert select_bands(ds, [4, 3, 2]) == [4, 3, 2]  # false colour, as asked
        with pytest.raises(InvalidRequestError, match="has 4 band") as err:
            select_bands(ds, [5])
        assert "between 1 and 4" in err.value.hint
        with pytest.raises(InvalidRequestError, match="has 4 band"):
            select_bands(ds, [0, 1, 2])
        with pytest.raises(InvalidRequestError, match="1 or 3 bands"):
            select_bands(ds, [1, 2])


def test_real_samples() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"shared sample data not found at {SHARED}")
    with open_raster(SHARED / "landsat_rgb_utm18n.tif") as ds:
        assert select_bands(ds) == [1, 2, 3]
    with open_raster(SHARED / "spacenet_atlanta_pan_utm16n.tif") as ds:
        assert select_bands(ds) == [1, 1, 1]
    with open_raster(SHARED / "custom_albers_int16.tif") as ds:  # gray, undefined, undefined
        assert select_bands(ds) == [1, 2, 3]
