"""open_raster: what GDAL opens passes through; everything else gets a clear error."""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from rs_reasoner.errors import RasterError
from rs_reasoner.raster import (
    PIXEL_SPACE_TRANSFORM,
    is_georeferenced,
    open_raster,
    raster_transform,
)
from tests.support.rasters import UTM_TRANSFORM, scene_with_squares, write_geotiff

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_opens_a_geotiff_from_str_or_path(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "a.tif", scene_with_squares())
    for name in (path, str(path)):
        with open_raster(name) as ds:
            assert (ds.count, ds.height, ds.width) == (3, 300, 400)
            assert raster_transform(ds) == UTM_TRANSFORM and is_georeferenced(ds)


def test_missing_file_says_it_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(RasterError, match="does not exist") as err:
        open_raster(tmp_path / "missing.tif")
    assert "missing.tif" in err.value.message and err.value.hint


def test_non_raster_file_says_gdal_cannot_read_it(tmp_path: Path) -> None:
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    with pytest.raises(RasterError, match="GDAL cannot read .*notes.tif as a raster"):
        open_raster(text)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(RasterError, match="empty"):
        open_raster(empty)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_fifo_is_refused_without_being_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "image.tif"
    os.mkfifo(fifo)
    errors: list[Exception] = []

    def attempt() -> None:
        try:
            open_raster(fifo).close()
        except Exception as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)

    # Opening a FIFO waits for a writer: run it aside so a regression fails, not hangs.
    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        with contextlib.suppress(OSError):  # be the writer: the blocked open returns
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("open_raster blocked on a FIFO")
    assert len(errors) == 1 and isinstance(errors[0], RasterError)
    assert "not a regular file" in errors[0].message


def test_vector_file_and_folder_get_their_own_hint(tmp_path: Path) -> None:
    vector = tmp_path / "roads.geojson"
    vector.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(RasterError) as err:
        open_raster(vector)
    assert "vector file" in err.value.hint
    with pytest.raises(RasterError, match="is a folder"):
        open_raster(tmp_path)


def test_container_without_bands_lists_its_subdatasets(tmp_path: Path) -> None:
    path = tmp_path / "two.gpkg"
    profile = dict(driver="GPKG", width=16, height=16, count=3, dtype="uint8",
                   crs="EPSG:3857", transform=Affine(1, 0, 0, 0, -1, 16))
    for table, extra in (("a", {}), ("b", {"APPEND_SUBDATASET": "YES"})):
        with rasterio.open(path, "w", RASTER_TABLE=table, **profile, **extra) as dst:
            dst.write(np.zeros((3, 16, 16), np.uint8))
    with pytest.raises(RasterError, match="no raster bands") as err:
        open_raster(path)
    assert f"GPKG:{path}:a" in err.value.hint
    # The subdataset name is a GDAL connection string, not a file: it passes through.
    with open_raster(f"GPKG:{path}:b") as ds:
        assert ds.count == 4 and ds.height == 16  # GPKG tiles read as RGBA


def test_gdal_virtual_paths_pass_through(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "a.tif", scene_with_squares())
    with open_raster(f"GTIFF_DIR:1:{path}") as ds:
        assert ds.count == 3
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=8, height=8, count=1, dtype="uint8",
                      crs="EPSG:32633", transform=UTM_TRANSFORM) as dst:
            dst.write(np.ones((1, 8, 8), np.uint8))
        assert mem.name.startswith("/vsimem/")
        with open_raster(mem.name) as ds:
            assert ds.read(1).sum() == 64
    with pytest.raises(RasterError, match="GDAL cannot read"):
        open_raster("/vsimem/nothing-here.tif")


def test_vrt_opens(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "a.tif", scene_with_squares())
    vrt = tmp_path / "a.vrt"
    vrt.write_text(
        '<VRTDataset rasterXSize="400" rasterYSize="300"><VRTRasterBand dataType="Byte" band="1">'
        f'<SimpleSource><SourceFilename relativeToVRT="0">{path}</SourceFilename>'
        "<SourceBand>2</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    )
    with open_raster(vrt) as ds:
        assert ds.count == 1 and ds.read(1)[60, 70] == 230


def test_non_georeferenced_raster_opens_silently_in_qgis_pixel_space(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the writer warns
        path = write_geotiff(tmp_path / "a.tif", scene_with_squares(), crs=None, transform=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        with open_raster(path) as ds:
            assert not is_georeferenced(ds)
            assert raster_transform(ds) == PIXEL_SPACE_TRANSFORM
            assert PIXEL_SPACE_TRANSFORM @ (20, 10) == (20, -10)  # x = column, y = -row


def test_real_samples_open(tmp_path: Path) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"shared sample data not found at {SHARED}")
    for name, count in (("landsat_rgb_utm18n.tif", 3), ("custom_albers_int16.tif", 3),
                        ("spacenet_lasvegas_pan_wgs84.tif", 1)):
        with open_raster(SHARED / name) as ds:
            assert ds.count == count and is_georeferenced(ds)
