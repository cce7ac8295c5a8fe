"""ExtentReader: working grid, stretch, validity, boundless global-coordinate reads."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import ColorInterp as CI
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from rs_reasoner.errors import ExtentError, JobCancelled, RasterError
from rs_reasoner.raster import ExtentReader, open_raster
from rs_reasoner.raster import reader as reader_module
from rs_reasoner.schemas import MAX_WORKING_PIXELS, Extent
from tests.support.rasters import UTM_CRS, UTM_TRANSFORM, scene_with_squares, write_geotiff

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared(name: str) -> Path:
    if not (SHARED / name).is_file():
        pytest.skip(f"shared sample raster {SHARED / name} not found")
    return SHARED / name


def pixel_extent(row0, col0, row1, col1, transform=UTM_TRANSFORM, crs=None) -> Extent:
    x0, y0 = transform @ (col0, row1)
    x1, y1 = transform @ (col1, row0)
    return Extent(xmin=min(x0, x1), ymin=min(y0, y1), xmax=max(x0, x1), ymax=max(y0, y1),
                  crs=crs)


def column_ramp(height: int = 300, width: int = 400, bands: int = 3) -> np.ndarray:
    """uint8 image whose value is column // 2 (0..199): resampling results are predictable."""
    return np.tile((np.arange(width) // 2).astype(np.uint8), (bands, height, 1))


class RecordingDataset:
    """Wraps a dataset and records the windows and output shapes of pixel reads."""

    def __init__(self, ds) -> None:
        self._ds = ds
        self.reads: list[tuple] = []

    def __getattr__(self, name):
        return getattr(self._ds, name)

    def read(self, *args, **kw):
        self.reads.append((kw.get("window"), kw.get("out_shape"), kw.get("resampling")))
        return self._ds.read(*args, **kw)

    def read_masks(self, *args, **kw):
        self.reads.append((kw.get("window"), kw.get("out_shape"), kw.get("resampling")))
        return self._ds.read_masks(*args, **kw)

    def touched(self) -> float:
        """Source pixels GDAL evaluates for the recorded reads: a nearest read samples
        one source pixel per output pixel; a filtering one reads its whole window (this
        raster has no overviews)."""
        total = 0.0
        for window, shape, resampling in self.reads:
            if resampling is Resampling.nearest:
                total += shape[-2] * shape[-1]
            else:
                total += window.width * window.height
        return total


def test_uint8_extent_keeps_values_and_reads_global_coordinates(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(1, 255, (3, 300, 400), dtype=np.uint8)
    with open_raster(write_geotiff(tmp_path / "a.tif", data)) as ds:
        reader = ExtentReader.open(ds, pixel_extent(100, 120, 180, 260))
        assert reader.window == (100, 120, 180, 260) and reader.bands == [1, 2, 3]
        assert (reader.height, reader.width) == (80, 140)
        assert reader.transform == UTM_TRANSFORM @ Affine.translation(120, 100)
        assert reader.crs == ds.crs
        image, valid = reader.read_extent()
        assert image.dtype == np.uint8 and image.shape == (80, 140, 3) and valid.all()
        assert (image == np.moveaxis(data[:, 100:180, 120:260], 0, -1)).all()
        # Reads are in global working-grid coordinates, not relative to the extent;
        # context outside the extent but inside the raster is real data.
        image, valid = reader.read(0, 0, 10, 10)
        assert valid.all() and (image == np.moveaxis(data[:, :10, :10], 0, -1)).all()


def test_outside_the_raster_is_invalid_and_black(tmp_path: Path) -> None:
    data = scene_with_squares(height=100, width=120, background=50)
    with open_raster(write_geotiff(tmp_path / "a.tif", data)) as ds:
        reader = ExtentReader.open(ds, None)
        image, valid = reader.read(-5, -8, 50, 50)
        assert image.shape == (55, 58, 3)
        assert not valid[:5].any() and not valid[:, :8].any() and valid[5:, 8:].all()
        assert (image[~valid] == 0).all() and (image[valid] > 0).all()
        image, valid = reader.read(90, 110, 130, 150)  # past the bottom-right corner
        assert valid[:10, :10].all() and valid.sum() == 100
        image, valid = reader.read(500, 500, 510, 520)  # wholly outside
        assert not valid.any() and not image.any()


def test_nodata_border_is_invalid(tmp_path: Path) -> None:
    data = scene_with_squares(height=100, width=120)
    data[:, :, :10] = 0
    data[:, -3:, :] = 0
    with open_raster(write_geotiff(tmp_path / "a.tif", data, nodata=0)) as ds:
        image, valid = ExtentReader.open(ds, None).read_extent()
        assert not valid[:, :10].any() and not valid[-3:].any()
        assert valid[:-3, 10:].all()


def test_one_band_at_nodata_is_still_data(tmp_path: Path) -> None:
    """Regression: nodata=255 on RGB made saturated pixels (255, 90, 80) vanish."""
    data = scene_with_squares(height=40, width=40)
    data[:, 5:10, 5:10] = np.array([255, 90, 80], np.uint8)[:, None, None]  # saturated red
    data[:, 20:25, 20:25] = 255  # white in every band: NoData
    with open_raster(write_geotiff(tmp_path / "a.tif", data, nodata=255)) as ds:
        for res in (None, 4.0):  # native grid and a resampled one
            reader = ExtentReader.open(ds, None, resolution=res)
            image, valid = reader.read_extent()
            scale = 1 if res is None else 2
            assert valid[5 // scale : 10 // scale, 5 // scale : 10 // scale].all()
            assert not valid[20 // scale + 1 : 25 // scale, 20 // scale + 1 : 25 // scale].any()


def test_internal_mask_and_alpha_band(tmp_path: Path) -> None:
    data = scene_with_squares(height=64, width=64)
    path = write_geotiff(tmp_path / "m.tif", data)
    mask = np.full((64, 64), 255, np.uint8)
    mask[20:30, 5:60] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as dst:
        dst.write_mask(mask)
    with open_raster(path) as ds:
        _, valid = ExtentReader.open(ds, None).read_extent()
        assert (valid == (mask > 0)).all()
    rgba = np.concatenate([data, mask[None]])
    path = write_geotiff(tmp_path / "a.tif", rgba,
                         colorinterp=[CI.red, CI.green, CI.blue, CI.alpha])
    with open_raster(path) as ds:
        reader = ExtentReader.open(ds, None)
        assert reader.bands == [1, 2, 3]
        image, valid = reader.read_extent()
        assert (valid == (mask > 0)).all() and (image[~valid] == 0).all()


def test_nan_and_float_nodata_are_invalid(tmp_path: Path) -> None:
    data = np.ones((1, 40, 40), np.float32)
    data[0, 5, 5] = np.nan
    data[0, 6, 6] = np.inf
    data[0, 7, 7] = -9999.0
    for nodata in (None, -9999.0, float("nan")):
        path = write_geotiff(tmp_path / f"f{nodata}.tif", data, nodata=nodata)
        with open_raster(path) as ds:
            _, valid = ExtentReader.open(ds, None).read_extent()
            assert not valid[5, 5] and not valid[6, 6]
            assert valid[7, 7] == (nodata != -9999.0)
            assert valid.sum() == 40 * 40 - 2 - (nodata == -9999.0)


def test_uint16_rgbn_is_stretched_from_valid_pixels_of_the_extent(tmp_path: Path) -> None:
    data = np.zeros((4, 200, 200), np.uint16)
    ramp = np.tile(np.arange(1000, 3000, 10, dtype=np.uint16), (100, 1))  # 100 x 200
    data[0, :100], data[1, :100], data[2, :100] = ramp, ramp + 500, ramp + 1000
    data[3] = 60000  # NIR: must not be picked
    data[:3, 100:] = 65000  # bright field below the extent: must not skew the stretch
    data[:3, :10, :10] = 0  # NoData inside the extent: excluded from the percentiles
    path = write_geotiff(tmp_path / "a.tif", data, nodata=0,
                         colorinterp=[CI.red, CI.green, CI.blue, CI.undefined])
    with open_raster(path) as ds:
        reader = ExtentReader.open(ds, pixel_extent(0, 0, 100, 200))
        assert reader.bands == [1, 2, 3]
        valid_vals = ramp[10:].ravel(), ramp[:10, 10:].ravel()
        expected = np.percentile(np.concatenate(valid_vals), [2, 98])
        assert reader.lo == pytest.approx(expected[0] + np.array([0, 500, 1000]))
        assert reader.hi == pytest.approx(expected[1] + np.array([0, 500, 1000]))
        image, valid = reader.read_extent()
        assert not valid[:10, :10].any() and valid[10:].all()
        # Same relative position in each band's range → same grey; dark left, bright right.
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
        assert image[50, 2, 0] == 0 and image[50, 197, 0] == 255
        assert 100 < image[50, 100, 0] < 156


def test_coarser_resolution_shape_transform_and_values(tmp_path: Path) -> None:
    with open_raster(write_geotiff(tmp_path / "a.tif", column_ramp())) as ds:
        reader = ExtentReader.open(ds, None, resolution=4.0)  # source pixels are 2 m
        assert reader.scale == 2.0 and (reader.height, reader.width) == (150, 200)
        assert reader.transform == UTM_TRANSFORM @ Affine.scale(2.0)
        image, valid = reader.read_extent()
        assert valid.all()
        # Working column c averages source columns 2c, 2c+1, whose values are both c.
        assert (image[:, 1:-1, 0] == np.arange(1, 199)).all()
        # An extent on the coarse grid: its affine starts at its own top-left pixel.
        sub = ExtentReader.open(ds, pixel_extent(40, 60, 100, 200), resolution=4.0)
        assert sub.window == (20, 30, 50, 100)
        assert sub.transform == UTM_TRANSFORM @ Affine.scale(2.0) @ Affine.translation(30, 20)
        assert (sub.read_extent()[0] == image[20:50, 30:100]).all()


def test_partly_covered_last_pixel_is_read_from_what_exists(tmp_path: Path) -> None:
    with open_raster(write_geotiff(tmp_path / "a.tif", column_ramp())) as ds:
        reader = ExtentReader.open(ds, None, resolution=14.0)  # 7 source pixels each
        assert (reader.height, reader.width) == (43, 58)  # 300/7, 400/7 rounded up
        image, valid = reader.read_extent()
        assert valid.all()
        # Column 56 covers source 392-398 (values 196-199); column 57 only source 399.
        assert abs(int(image[0, 56, 0]) - 197.5) <= 1 and image[0, 57, 0] == 199
        # Without splitting, GDAL would stretch 7.x source columns over 57 and drift.
        assert abs(int(image[0, 10, 0]) - 36.5) <= 1  # source 70-76: values 35-38
        # Reading a tile across the raster's edge gives the same pixels.
        tile, tile_valid = reader.read(40, 50, 48, 62)
        assert (tile[:3, :8] == image[40:43, 50:58]).all()
        assert tile_valid[:3, :8].all() and not tile_valid[3:].any() and not tile_valid[:, 8:].any()


def test_finer_resolution_upsamples(tmp_path: Path) -> None:
    with open_raster(write_geotiff(tmp_path / "a.tif", column_ramp())) as ds:
        reader = ExtentReader.open(ds, pixel_extent(0, 0, 10, 20), resolution=1.0)
        assert reader.window == (0, 0, 20, 40) and reader.transform.a == 1.0
        image, valid = reader.read_extent()
        assert valid.all() and image.shape == (20, 40, 3)
        assert abs(int(image[5, 21, 0]) - 5) <= 1


def test_geographic_extent_reads_the_right_pixels(tmp_path: Path) -> None:
    data = scene_with_squares(squares=[(20, 20, 30), (200, 300, 30)])
    with open_raster(write_geotiff(tmp_path / "a.tif", data)) as ds:
        x0, y0 = UTM_TRANSFORM @ (290, 240)
        x1, y1 = UTM_TRANSFORM @ (340, 190)
        b = Transformer.from_crs(UTM_CRS, "EPSG:4326", always_xy=True).transform_bounds(
            x0, y0, x1, y1)
        reader = ExtentReader.open(ds, Extent(xmin=b[0], ymin=b[1], xmax=b[2], ymax=b[3],
                                              crs="EPSG:4326"))
        r0, c0, r1, c1 = reader.window
        assert r0 <= 190 and c0 <= 290 and r1 >= 240 and c1 >= 340
        image, _ = reader.read_extent()
        bright = np.argwhere(image[..., 0] > 200)
        # The square at rows 200-230, columns 300-330 of the raster, nothing else.
        assert (bright.min(0) + (r0, c0)).tolist() == [200, 300]
        assert (bright.max(0) + (r0, c0)).tolist() == [229, 329]
        assert len(bright) == 900


def test_refuses_working_grids_beyond_the_limit(tmp_path: Path) -> None:
    with open_raster(write_geotiff(tmp_path / "a.tif", scene_with_squares())) as ds:
        with pytest.raises(ExtentError, match="more than") as err:
            ExtentReader.open(ds, None, resolution=1e-3)
        assert "coarser ground resolution" in err.value.hint
        suggested = float(re.search(r"at least ([0-9.e+-]+)", err.value.hint).group(1))
        ok = ExtentReader.open(ds, pixel_extent(0, 0, 2, 2), resolution=suggested)
        assert ok.height * ok.width <= MAX_WORKING_PIXELS
        coarse = ExtentReader.open(ds, None, resolution=1e6)  # coarser than the raster
        assert (coarse.height, coarse.width) == (1, 1)


def test_non_georeferenced_raster_works_in_pixel_space(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the writer warns
        path = write_geotiff(tmp_path / "a.tif", scene_with_squares(), crs=None, transform=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        with open_raster(path) as ds:
            reader = ExtentReader.open(ds, Extent(xmin=20, ymin=-30, xmax=60, ymax=-10))
            assert reader.crs is None and reader.window == (10, 20, 30, 60)
            assert reader.transform @ (0, 0) == (20, -10)
            coarse = ExtentReader.open(ds, None, resolution=2.0)  # in pixels
            assert coarse.transform == Affine(2, 0, 0, 0, -2, 0)
            assert coarse.read_extent()[0].shape == (150, 200, 3)


def test_complex_bands_are_refused(tmp_path: Path) -> None:
    data = np.ones((1, 8, 8), np.complex64)
    path = write_geotiff(tmp_path / "c.tif", data)
    with open_raster(path) as ds, pytest.raises(RasterError, match="complex"):
        ExtentReader.open(ds, None)


def test_damaged_file_gives_a_raster_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = write_geotiff(tmp_path / "a.tif", rng.integers(0, 255, (3, 512, 512), np.uint8))
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 3])
    with open_raster(path) as ds, pytest.raises(RasterError, match="cannot be read"):
        ExtentReader.open(ds, None).read_extent()


def test_reads_touch_only_their_window_and_statistics_are_decimated() -> None:
    with open_raster(shared("spacenet_lasvegas_pan_wgs84.tif")) as ds:  # 1300 x 1300 uint16
        spy = RecordingDataset(ds)
        reader = ExtentReader.open(spy, None)
        assert spy.reads and all(max(shape[1:]) <= 1024 for _, shape, _ in spy.reads)
        spy.reads.clear()
        image, valid = reader.read(100, 200, 164, 264)
        assert image.shape == (64, 64, 3) and valid.all()
        for window, _, _ in spy.reads:
            assert (window.row_off, window.col_off, window.height, window.width) == (
                100, 200, 64, 64)


def test_real_landsat_nodata_collar() -> None:
    with open_raster(shared("landsat_rgb_utm18n.tif")) as ds:
        reader = ExtentReader.open(ds, None)
        image, valid = reader.read_extent()
        raw = ds.read()
        # GDAL's dataset mask: NoData only where every band is 0.
        assert (valid == (ds.dataset_mask() > 0)).all()
        assert (valid == (raw != 0).any(axis=0)).all()
        assert 0.1 < 1 - valid.mean() < 0.6  # the collar is there and masked
        assert (image[valid] == np.moveaxis(raw, 0, -1)[valid]).all()  # 8-bit untouched
        assert (image[~valid] == 0).all()


def test_real_uint16_panchromatic_is_replicated_and_stretched() -> None:
    with open_raster(shared("spacenet_atlanta_pan_utm16n.tif")) as ds:
        reader = ExtentReader.open(ds, None)
        assert reader.bands == [1, 1, 1] and reader.hi[0] > 255  # 11-bit data
        image, valid = reader.read_extent()
        assert image.shape == (900, 900, 3)
        assert (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all()
        grey = image[..., 0][valid]
        # 2-98 % stretch: a few percent saturate at each end, the rest spreads out.
        assert 0.005 < (grey == 0).mean() < 0.05 and 0.005 < (grey == 255).mean() < 0.05
        assert 60 < grey.mean() < 200 and grey.std() > 30


def test_real_custom_albers_int16_is_stretched_per_band() -> None:
    with open_raster(shared("custom_albers_int16.tif")) as ds:  # 512 x 512: stats at full res
        reader = ExtentReader.open(ds, None)
        raw = ds.read().reshape(3, -1).astype(float)
        assert reader.lo == pytest.approx(np.percentile(raw, 2, axis=1))
        assert reader.hi == pytest.approx(np.percentile(raw, 98, axis=1))
        image, valid = reader.read_extent()
        assert valid.all()  # nodata -9999 is declared but absent
        assert (image.reshape(-1, 3).mean(0) > 60).all()


def mosaic_vrt(tmp_path: Path, tiles: int, tile: np.ndarray) -> Path:
    """A VRT of tiles x tiles copies of one single-band GeoTIFF (a large mosaic without
    overviews, like a VRT over a folder of orthophoto tiles)."""
    n = tile.shape[-1]
    src = write_geotiff(tmp_path / "tile.tif", tile, crs=None, transform=None)
    sources = "".join(
        f"<SimpleSource><SourceFilename>{src}</SourceFilename><SourceBand>1</SourceBand>"
        f'<SrcRect xOff="0" yOff="0" xSize="{n}" ySize="{n}"/>'
        f'<DstRect xOff="{j * n}" yOff="{i * n}" xSize="{n}" ySize="{n}"/></SimpleSource>'
        for i in range(tiles)
        for j in range(tiles)
    )
    path = tmp_path / "mosaic.vrt"
    path.write_text(
        f'<VRTDataset rasterXSize="{tiles * n}" rasterYSize="{tiles * n}">'
        f'<VRTRasterBand dataType="Byte" band="1">{sources}</VRTRasterBand></VRTDataset>'
    )
    return path


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """100,000² pixels: 100 x 100 copies of a 1000² tile of 10 x 10 flat 100-px blocks,
    and the blocks' values."""
    blocks = np.random.default_rng(3).integers(0, 256, (10, 10), dtype=np.uint8)
    tile = np.kron(blocks, np.ones((100, 100), np.uint8))
    return mosaic_vrt(tmp_path_factory.mktemp("mosaic"), 100, tile), blocks


def test_coarse_read_of_a_huge_mosaic_samples_instead_of_filtering(mosaic) -> None:
    path, blocks = mosaic
    with open_raster(path) as ds:
        spy = RecordingDataset(ds)
        reader = ExtentReader.open(spy, None, resolution=100.0)  # pixel space: 100 px each
        assert (reader.height, reader.width) == (1000, 1000)
        spy.reads.clear()
        image, valid = reader.read(0, 0, 256, 1024)  # a window of 2.6 * 10^9 source px
    assert valid[:, :1000].all() and not valid[:, 1000:].any()
    # A few source pixels per working pixel, not the 10,000 a filtered read evaluates.
    k = reader_module.DECIMATE_SAMPLES
    assert spy.touched() <= 2 * k * k * 256 * 1024
    # Working pixel (r, c) is exactly one flat block.
    assert (image[:, :1000, 0] == np.tile(blocks, (26, 100))[:256]).all()


def test_cancel_stops_a_huge_tile_between_its_row_bands(mosaic) -> None:
    path, _ = mosaic
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 2:
            raise JobCancelled()

    with open_raster(path) as ds:
        spy = RecordingDataset(ds)
        reader = ExtentReader.open(spy, None, resolution=100.0)
        reader.check = check
        spy.reads.clear()
        with pytest.raises(JobCancelled):
            reader.read(0, 0, 1000, 1000)
    # Two row bands were read, then the check stopped the tile (of hundreds of bands).
    assert len(calls) == 3 and 0 < len(spy.reads) <= 2 * 2
    assert sum(shape[-2] for _, shape, _ in spy.reads) < 1000


@pytest.mark.parametrize("resolution", [2.0, 4.0, 9.0, 14.0])
def test_reads_split_into_row_bands_give_the_same_pixels(
    tmp_path: Path, monkeypatch, resolution: float
) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4000, (3, 300, 400), dtype=np.uint16)
    data[:, :20, :30] = 0
    with open_raster(write_geotiff(tmp_path / "a.tif", data, nodata=0)) as ds:
        whole = ExtentReader.open(ds, None, resolution=resolution)
        expected = whole.read(-3, -5, whole.height + 2, whole.width + 4)
        monkeypatch.setattr(reader_module, "CHUNK_SOURCE_PIXELS", 3000)
        calls = []
        banded = ExtentReader.open(ds, None, resolution=resolution, check=lambda: calls.append(1))
        assert (banded.lo == whole.lo).all() and (banded.hi == whole.hi).all()
        calls.clear()
        got = banded.read(-3, -5, whole.height + 2, whole.width + 4)
    assert len(calls) > 3  # read in several bands, checked before each
    assert (got[0] == expected[0]).all() and (got[1] == expected[1]).all()


def test_decimated_read_leaves_nodata_samples_out(tmp_path: Path) -> None:
    data = np.full((1, 400, 400), 200, np.uint8)
    data[:, :, ::2] = 0  # every other column is NoData
    data[:, :200, :] = 0  # the top half is all NoData
    with open_raster(write_geotiff(tmp_path / "a.tif", data, nodata=0)) as ds:
        reader = ExtentReader.open(ds, None, resolution=2.0 * 10)  # 10 source px each
        image, valid = reader.read_extent()
    assert reader.scale == 10.0 and image.shape == (40, 40, 3)
    assert not valid[:20].any() and valid[20:].all()
    assert (image[20:] == 200).all()  # mean of the valid samples only, not blended with 0


def test_absurdly_fine_resolution_is_a_clear_extent_error(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "a.tif", column_ramp())
    with open_raster(path) as ds, pytest.raises(ExtentError, match="coarser ground") as err:
        ExtentReader.open(ds, None, resolution=1e-200)
    assert "about 1e406 working pixels" in err.value.message


def test_place_checks_without_reading_pixels(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 4000, (3, 300, 400), dtype=np.uint16)
    with open_raster(write_geotiff(tmp_path / "a.tif", data)) as ds:
        spy = RecordingDataset(ds)
        reader = ExtentReader.place(spy, pixel_extent(10, 10, 50, 60))
        assert reader.window == (10, 10, 50, 60) and spy.reads == []
        with pytest.raises(ExtentError):
            ExtentReader.place(spy, pixel_extent(10, 10, 50, 60), resolution=1e-6)


def test_raw_reads_every_band_of_the_68_band_stack_with_nan_kept() -> None:
    from rs_reasoner.raster.band_stats import read_bands

    path = shared("slovenia/slovenia_ndvi_68dates_utm33n.tif")
    with open_raster(path) as ds:
        reader = ExtentReader.open(ds, None, raw=True)
        assert reader.bands == list(range(1, 69))
        data, valid = reader.read_raw(*reader.window)
        direct, direct_valid = read_bands(ds, reader.bands)
        np.testing.assert_array_equal(valid, direct_valid)
        np.testing.assert_array_equal(data, direct)  # NaN (clouds) in the same places
        # Past the raster's edge: invalid and NaN in every band.
        part, ok = reader.read_raw(90, 90, 110, 110)
        assert not ok[11:].any() and np.isnan(part[:, 11:]).all()
        with pytest.raises(Exception, match=r"Band\(s\) \[69\] do not exist"):
            ExtentReader.open(ds, None, [1, 69], raw=True)


def test_raw_read_at_a_coarser_resolution_matches_the_stretched_read() -> None:
    path = shared("spacenet_atlanta_pan_utm16n.tif")
    with open_raster(path) as ds:
        raw_reader = ExtentReader.open(ds, None, [1], resolution=1.5, raw=True)
        rgb_reader = ExtentReader.open(ds, None, [1], resolution=1.5)
        raw, valid = raw_reader.read_raw(0, 0, 200, 200)
        image, valid_rgb = rgb_reader.read(0, 0, 200, 200)
    np.testing.assert_array_equal(valid, valid_rgb)
    assert raw.shape == (1, 200, 200) and raw.dtype == np.float32
    # The same resampled values, before and after the 8-bit stretch.
    from rs_reasoner.raster.stretch import apply_stretch

    expected = apply_stretch(np.nan_to_num(raw), rgb_reader.lo[:1], rgb_reader.hi[:1])[..., 0]
    np.testing.assert_array_equal(expected[valid], image[..., 0][valid])


def test_raw_read_marks_each_bands_nodata(tmp_path: Path) -> None:
    data = np.full((2, 20, 20), 7, np.int16)
    data[0, :5] = -9999  # band 1 has no data in the top rows; band 2 has
    path = write_geotiff(tmp_path / "nd.tif", data, nodata=-9999)
    with open_raster(path) as ds:
        reader = ExtentReader.open(ds, None, raw=True)
        raw, valid = reader.read_raw(*reader.window)
    assert valid.all()  # band 2 has data everywhere: every pixel is valid
    assert np.isnan(raw[0, :5]).all() and (raw[0, 5:] == 7).all() and (raw[1] == 7).all()
