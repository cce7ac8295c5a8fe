"""extent_to_window: extents in any CRS → working-grid windows, rounded outwards, clipped."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS as RioCRS
from rasterio.errors import NotGeoreferencedWarning

from rs_reasoner.errors import ExtentError
from rs_reasoner.raster import extent_to_window, open_raster, working_shape
from rs_reasoner.schemas import Extent
from tests.support.rasters import (
    CUSTOM_WKT,
    UTM_CRS,
    UTM_TRANSFORM,
    scene_with_squares,
    write_geotiff,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared(name: str) -> Path:
    if not (SHARED / name).is_file():
        pytest.skip(f"shared sample raster {SHARED / name} not found")
    return SHARED / name


def pixel_extent(row0, col0, row1, col1, transform=UTM_TRANSFORM, crs=None) -> Extent:
    """The map bounding box of a block of source pixels."""
    pts = [transform @ (c, r) for c in (col0, col1) for r in (row0, row1)]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return Extent(xmin=min(xs), ymin=min(ys), xmax=max(xs), ymax=max(ys), crs=crs)


def reproject_extent(extent: Extent, src: str, dst: str) -> Extent:
    t = Transformer.from_crs(src, dst, always_xy=True)
    b = t.transform_bounds(extent.xmin, extent.ymin, extent.xmax, extent.ymax, densify_pts=21)
    return Extent(xmin=b[0], ymin=b[1], xmax=b[2], ymax=b[3], crs=dst)


def dense_window(transform: Affine, extent: Extent, dst: str, n: int = 400) -> tuple:
    """Independent oracle: the pixel bounding box of the extent's densely sampled outline
    transformed to the raster CRS (rounded outwards)."""
    t = Transformer.from_crs(extent.crs, dst, always_xy=True)
    xs = np.linspace(extent.xmin, extent.xmax, n)
    ys = np.linspace(extent.ymin, extent.ymax, n)
    outline = np.concatenate([
        np.stack([xs, np.full(n, extent.ymin)]), np.stack([xs, np.full(n, extent.ymax)]),
        np.stack([np.full(n, extent.xmin), ys]), np.stack([np.full(n, extent.xmax), ys]),
    ], axis=1)
    mx, my = t.transform(outline[0], outline[1])
    inv = ~transform
    cols = inv.a * mx + inv.b * my + inv.c
    rows = inv.d * mx + inv.e * my + inv.f
    return (math.floor(rows.min()), math.floor(cols.min()),
            math.ceil(rows.max()), math.ceil(cols.max()))


def assert_window(window, box, oracle) -> None:
    """``window`` contains the pixel ``box`` the extent was made from and matches the
    densified oracle to a pixel (the two densify differently)."""
    r0, c0, r1, c1 = window
    assert r0 <= box[0] and c0 <= box[1] and r1 >= box[2] and c1 >= box[3], (window, box)
    assert max(abs(a - b) for a, b in zip(window, oracle, strict=True)) <= 1, (window, oracle)


@pytest.fixture
def utm(tmp_path: Path):
    with open_raster(write_geotiff(tmp_path / "a.tif", scene_with_squares())) as ds:
        yield ds


def test_whole_raster_and_pixel_exact_extents(utm) -> None:
    assert extent_to_window(utm, None) == (0, 0, 300, 400)
    assert extent_to_window(utm, pixel_extent(10, 20, 30, 60)) == (10, 20, 30, 60)
    # The same extent with the raster's CRS spelled out is not round-tripped through PROJ.
    assert extent_to_window(utm, pixel_extent(10, 20, 30, 60, crs=UTM_CRS)) == (10, 20, 30, 60)


def test_partial_pixels_round_outwards_and_overhang_is_clipped(utm) -> None:
    assert extent_to_window(utm, pixel_extent(10.5, 20.2, 29.5, 59.9)) == (10, 20, 30, 60)
    assert extent_to_window(utm, pixel_extent(-50, -7.5, 30, 500)) == (0, 0, 30, 400)


def test_working_grid_scale(utm) -> None:
    assert working_shape(utm, 2.0) == (150, 200)
    assert working_shape(utm, 7.0) == (43, 58)  # a partly covered last pixel counts
    assert working_shape(utm, 1e6) == (1, 1)
    assert extent_to_window(utm, pixel_extent(10, 20, 30, 60), scale=2.0) == (5, 10, 15, 30)
    # 10/3 and 20/3 round down, 30/3 and 60/3 are exact.
    assert extent_to_window(utm, pixel_extent(10, 20, 30, 60), scale=3.0) == (3, 6, 10, 20)
    assert extent_to_window(utm, None, scale=7.0) == (0, 0, 43, 58)
    assert extent_to_window(utm, pixel_extent(0, 0, 300, 400), scale=0.5) == (0, 0, 600, 800)


def test_geographic_extent_over_a_utm_raster(tmp_path: Path) -> None:
    # Away from the zone's central meridian, so grid north and true north differ.
    transform = Affine.translation(620_000, 4_100_000) @ Affine.scale(2.0, -2.0)
    path = write_geotiff(tmp_path / "a.tif", scene_with_squares(), transform=transform)
    with open_raster(path) as ds:
        box = (120, 100, 200, 180)  # rows 120-200, columns 100-180
        extent = reproject_extent(pixel_extent(*box, transform=transform), UTM_CRS, "EPSG:4326")
        # The lon/lat box around the UTM box is larger (grid convergence), never smaller.
        window = extent_to_window(ds, extent)
        assert_window(window, box, dense_window(transform, extent, UTM_CRS))
        assert window != box
        # A PROJ string and a custom WKT without EPSG code work the same way.
        proj = "+proj=longlat +datum=WGS84 +no_defs"
        extent_proj = extent.model_copy(update={"crs": proj})
        assert extent_to_window(ds, extent_proj) == extent_to_window(ds, extent)
        albers = reproject_extent(pixel_extent(*box, transform=transform), UTM_CRS, CUSTOM_WKT)
        assert_window(extent_to_window(ds, albers), box, dense_window(transform, albers, UTM_CRS))


def test_extent_on_a_custom_wkt_raster(tmp_path: Path) -> None:
    transform = Affine.translation(-1_000_000, 2_000_000) @ Affine.scale(30.0, -30.0)
    data = scene_with_squares()
    with open_raster(write_geotiff(tmp_path / "a.tif", data, crs=CUSTOM_WKT,
                                   transform=transform)) as ds:
        box = (40, 50, 140, 250)
        assert extent_to_window(ds, pixel_extent(*box, transform=transform)) == box
        same = pixel_extent(*box, transform=transform, crs=CUSTOM_WKT)
        assert extent_to_window(ds, same) == box
        geo = reproject_extent(pixel_extent(*box, transform=transform), CUSTOM_WKT, "EPSG:4326")
        assert_window(extent_to_window(ds, geo), box, dense_window(transform, geo, CUSTOM_WKT))


def test_real_custom_albers_sample() -> None:
    with open_raster(shared("custom_albers_int16.tif")) as ds:
        assert CRS.from_wkt(ds.crs.to_wkt()).to_epsg() is None  # really a custom CRS
        box = (100, 50, 200, 300)
        extent = pixel_extent(*box, transform=ds.transform, crs=ds.crs.to_wkt())
        assert extent_to_window(ds, extent) == box
        geo = reproject_extent(extent, ds.crs.to_wkt(), "EPSG:4326")
        oracle = dense_window(ds.transform, geo, ds.crs.to_wkt())
        assert_window(extent_to_window(ds, geo), box, oracle)


def test_real_geographic_raster_with_a_utm_extent() -> None:
    with open_raster(shared("spacenet_lasvegas_pan_wgs84.tif")) as ds:
        box = (300, 400, 500, 700)
        extent = pixel_extent(*box, transform=ds.transform, crs="EPSG:4326")
        assert extent_to_window(ds, extent) == box
        utm11 = reproject_extent(extent, "EPSG:4326", "EPSG:32611")
        oracle = dense_window(ds.transform, utm11, "EPSG:4326")
        assert_window(extent_to_window(ds, utm11), box, oracle)


def test_south_up_and_rotated_rasters(tmp_path: Path) -> None:
    data = scene_with_squares()
    south_up = Affine(2.0, 0.0, 500_000.0, 0.0, 2.0, 3_999_400.0)  # rows go north
    rotated = Affine.translation(500_000, 4_000_000) @ Affine.rotation(90) @ Affine.scale(2, -2)
    for i, transform in enumerate((south_up, rotated)):
        path = write_geotiff(tmp_path / f"{i}.tif", data, transform=transform)
        with open_raster(path) as ds:
            assert extent_to_window(ds, pixel_extent(10, 20, 30, 60, transform=transform)) == (
                10, 20, 30, 60,
            )
            assert extent_to_window(ds, None) == (0, 0, 300, 400)


def test_extent_outside_names_the_raster_bounds_and_crs(utm) -> None:
    with pytest.raises(ExtentError, match="outside the raster") as err:
        extent_to_window(utm, Extent(xmin=0, ymin=0, xmax=10, ymax=10))
    assert "EPSG:32633" in err.value.message
    assert "(500000, 3999400, 500800, 4000000)" in err.value.message
    # A geographic extent elsewhere: the raster's bounds are also given in its CRS.
    with pytest.raises(ExtentError, match="outside the raster") as err:
        extent_to_window(utm, Extent(xmin=-80, ymin=40, xmax=-79, ymax=41, crs="EPSG:4326"))
    assert "in EPSG:4326" in err.value.message
    # Touching the raster's edge from outside covers no pixel.
    with pytest.raises(ExtentError, match="outside"):
        extent_to_window(utm, pixel_extent(10, 400, 20, 410))


def test_degenerate_extent_is_empty(utm) -> None:
    x, y = UTM_TRANSFORM @ (20, 10)
    with pytest.raises(ExtentError, match="empty"):
        extent_to_window(utm, Extent(xmin=x, ymin=y - 2, xmax=x + 1e-9, ymax=y))


def test_invalid_crs_is_not_a_crs(utm) -> None:
    for bad in ("EPSG:999999", "not a crs", "+proj=nonsense"):
        with pytest.raises(ExtentError, match="not a coordinate reference system"):
            extent_to_window(utm, Extent(xmin=0, ymin=0, xmax=1, ymax=1, crs=bad))


def test_non_georeferenced_raster(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the writer warns
        path = write_geotiff(tmp_path / "b.tif", scene_with_squares(), crs=None, transform=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        with open_raster(path) as ds:
            assert extent_to_window(ds, None) == (0, 0, 300, 400)
            # Pixel space as QGIS shows it: x = column, y = -row.
            extent = Extent(xmin=20, ymin=-30, xmax=60, ymax=-10)
            assert extent_to_window(ds, extent) == (10, 20, 30, 60)
            with pytest.raises(ExtentError, match="has no CRS"):
                extent_to_window(ds, extent.model_copy(update={"crs": "EPSG:4326"}))
            # Row numbers given as positive y miss the image; the hint explains the space.
            with pytest.raises(ExtentError, match="outside") as err:
                extent_to_window(ds, Extent(xmin=20, ymin=10, xmax=60, ymax=30))
            assert "y = -row" in err.value.hint


def test_raster_with_ground_control_points_only(tmp_path: Path) -> None:
    path = tmp_path / "gcps.tif"
    gcps = [
        GroundControlPoint(0, 0, 500_000, 4_000_000),
        GroundControlPoint(0, 400, 500_800, 4_000_000),
        GroundControlPoint(300, 0, 500_000, 3_999_400),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        write_geotiff(path, scene_with_squares(), crs=None, transform=None)
        with rasterio.open(path, "r+") as dst:
            dst.gcps = (gcps, RioCRS.from_epsg(32633))
    with open_raster(path) as ds:
        extent = pixel_extent(10, 20, 30, 60, crs=UTM_CRS)
        with pytest.raises(ExtentError, match="ground control points only") as err:
            extent_to_window(ds, extent)
        assert "gdalwarp" in err.value.message
        assert extent_to_window(ds, Extent(xmin=20, ymin=-30, xmax=60, ymax=-10)) == (
            10, 20, 30, 60,
        )
