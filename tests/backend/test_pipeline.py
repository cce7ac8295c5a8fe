"""End-to-end behaviour of the pipeline on real GeoTIFFs (test-only segmenters)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import CRS, Transformer
from rasterio.enums import ColorInterp
from rasterio.features import shapes
from shapely.geometry import box, shape
from shapely.ops import unary_union

from rs_reasoner.errors import ExtentError, JobCancelled, MissingWeightsError
from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.schemas import Extent, Mode, SegmentOptions, SegmentRequest
from rs_reasoner.segmenters import registry
from rs_reasoner.segmenters.base import Segmenter, TileResult
from rs_reasoner.weights import WeightSpec
from tests.support.rasters import (
    CUSTOM_WKT,
    UTM_CRS,
    UTM_TRANSFORM,
    scene_with_squares,
    write_geotiff,
)

PIXEL = 2.0  # UTM_TRANSFORM pixel size


def square_box(row: int, col: int, size: int, transform=UTM_TRANSFORM):
    """Map-coordinate box of a pixel square."""
    x0, y0 = transform @ (col, row)
    x1, y1 = transform @ (col + size, row + size)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def run(path: Path, query: str = "bright", **kw) -> object:
    options = kw.pop("options", {})
    request = SegmentRequest(raster=str(path), query=query, options=SegmentOptions(**options), **kw)
    pipeline = SegmentationPipeline(device="cpu")
    pipeline.validate(request, str(path))
    return pipeline.run(request, str(path))


def assert_same_box(geom, expected, tol: float = PIXEL / 2) -> None:
    got = np.array(geom.bounds)
    assert np.abs(got - np.array(expected.bounds)).max() <= tol, (geom.bounds, expected.bounds)
    assert geom.symmetric_difference(expected).area <= tol * expected.length


def test_known_square_comes_back_at_its_map_coordinates(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "a.tif", scene_with_squares(squares=[(50, 60, 40)]))
    result = run(path)
    gdf = result.polygons
    assert len(gdf) == 1
    assert CRS.from_user_input(gdf.crs) == CRS.from_user_input(UTM_CRS)
    assert_same_box(gdf.geometry.iloc[0], square_box(50, 60, 40))
    row = gdf.iloc[0]
    assert (row["label"], row["query"], row["mode"], row["model"]) == (
        "bright", "bright", "open_vocabulary", "test-colour",
    )
    assert row["score"] == pytest.approx(0.9)


def test_extent_in_another_crs_selects_the_right_window(tmp_path: Path) -> None:
    path = write_geotiff(
        tmp_path / "a.tif", scene_with_squares(squares=[(20, 20, 30), (200, 300, 30)])
    )
    # An EPSG:4326 extent around the second square only.
    target = square_box(190, 290, 50)
    to_wgs84 = Transformer.from_crs(UTM_CRS, "EPSG:4326", always_xy=True)
    xmin, ymin, xmax, ymax = to_wgs84.transform_bounds(*target.bounds)
    extent = Extent(xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, crs="EPSG:4326")
    gdf = run(path, extent=extent).polygons
    assert len(gdf) == 1
    assert_same_box(gdf.geometry.iloc[0], square_box(200, 300, 30))


def test_object_crossing_tile_edges_is_one_polygon(tmp_path: Path) -> None:
    # 128 px tiles with 16 px context: cores every 96 px, so this square spans 4 tiles.
    path = write_geotiff(tmp_path / "a.tif", scene_with_squares(squares=[(70, 80, 60)]))
    gdf = run(path, options={"tile_size": 128, "overlap": 16}).polygons
    assert len(gdf) == 1
    assert_same_box(gdf.geometry.iloc[0], square_box(70, 80, 60))


def test_moving_the_extent_a_few_pixels_keeps_the_result(tmp_path: Path) -> None:
    data = scene_with_squares(height=400, width=400, squares=[(150, 140, 50), (260, 250, 20)])
    path = write_geotiff(tmp_path / "a.tif", data)
    x0, y0 = UTM_TRANSFORM @ (40, 360)
    x1, y1 = UTM_TRANSFORM @ (360, 40)
    results = []
    for shift in (0, 3, -5):
        d = shift * PIXEL
        extent = Extent(xmin=x0 + d, ymin=y0 + d, xmax=x1 + d, ymax=y1 + d)
        gdf = run(path, extent=extent, options={"tile_size": 128, "overlap": 16}).polygons
        results.append(unary_union(list(gdf.geometry)))
    assert results[0].equals(results[1]) and results[0].equals(results[2])


def test_nodata_never_gets_a_polygon(tmp_path: Path) -> None:
    data = scene_with_squares(squares=[(40, 40, 80)], value=230)
    data[:, :, :70] = 255  # NoData strip, bright: a careless segmenter would take it
    path = write_geotiff(tmp_path / "a.tif", data, nodata=255)
    gdf = run(path, model="test-greedy", options={"simplify": 3.0}).polygons
    nodata_area = box(*(UTM_TRANSFORM @ (0, 300)), *(UTM_TRANSFORM @ (70, 0)))
    assert len(gdf) == 1
    assert gdf.geometry.iloc[0].intersection(nodata_area).area == pytest.approx(0, abs=1e-6)
    # What is left of the square: rows 40-120, columns 70-120.
    expected = box(*(UTM_TRANSFORM @ (70, 120)), *(UTM_TRANSFORM @ (120, 40)))
    assert_same_box(gdf.geometry.iloc[0], expected)


def test_uint16_four_band_raster_uses_rgb_and_is_stretched(tmp_path: Path) -> None:
    data = scene_with_squares(squares=[(30, 30, 25)], background=300, value=2900, bands=4,
                              dtype="uint16")
    data[3] = 100  # a dark NIR band that must not be picked
    path = write_geotiff(
        tmp_path / "a.tif", data,
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined],
    )
    gdf = run(path).polygons
    assert len(gdf) == 1
    assert_same_box(gdf.geometry.iloc[0], square_box(30, 30, 25))


def test_single_band_raster_with_custom_wkt(tmp_path: Path) -> None:
    data = scene_with_squares(squares=[(10, 10, 20)], bands=1)
    path = write_geotiff(tmp_path / "a.tif", data, crs=CUSTOM_WKT)
    gdf = run(path).polygons
    assert CRS.from_user_input(gdf.crs).equals(CRS.from_wkt(CUSTOM_WKT))
    assert_same_box(gdf.geometry.iloc[0], square_box(10, 10, 20))


def test_non_georeferenced_raster_gives_pixel_coordinates(tmp_path: Path) -> None:
    data = scene_with_squares(squares=[(10, 20, 30)])
    path = write_geotiff(tmp_path / "a.tif", data, crs=None, transform=None)
    gdf = run(path).polygons
    assert gdf.crs is None
    # GDAL's default geotransform for such files flips y: rows go down, y = -row.
    geom = gdf.geometry.iloc[0]
    assert geom.area == pytest.approx(30 * 30)
    assert sorted(abs(v) for v in geom.bounds) == sorted([20, 10, 50, 40])


def test_output_crs_reprojects(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "a.tif", scene_with_squares(squares=[(50, 60, 40)]))
    gdf = run(path, output_crs="EPSG:4326").polygons
    assert CRS.from_user_input(gdf.crs) == CRS.from_epsg(4326)
    to_utm = Transformer.from_crs("EPSG:4326", UTM_CRS, always_xy=True)
    back = to_utm.transform_bounds(*gdf.geometry.iloc[0].bounds)
    assert np.allclose(back, square_box(50, 60, 40).bounds, atol=PIXEL / 2)


def test_score_threshold_drops_low_scores(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "a.tif", scene_with_squares())
    assert len(run(path, options={"score_threshold": 0.95}).polygons) == 0


def test_whole_extent_segmenter_returns_reasoning(tmp_path: Path) -> None:
    data = scene_with_squares(squares=[(10, 10, 10), (100, 100, 30)])
    path = write_geotiff(tmp_path / "a.tif", data)
    result = run(path, query="the largest bright building in the scene")
    assert result.mode.value == "reasoning" and result.model == "test-reasoning"
    gdf = result.polygons
    assert len(gdf) == 1
    assert_same_box(gdf.geometry.iloc[0], square_box(100, 100, 30))
    assert "largest bright object" in gdf.iloc[0]["reasoning"]


def test_cancel_stops_between_tiles(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "a.tif", scene_with_squares(height=512, width=512))
    request = SegmentRequest(raster=str(path), query="bright", model="test-slow",
                             options=SegmentOptions(tile_size=128, overlap=16))
    cancel = threading.Event()
    tiles_done: list[str] = []

    def progress(stage: str, fraction: float, message: str | None) -> None:
        if stage == "segmenting":
            cancel.set()
            if message:
                tiles_done.append(message)

    with pytest.raises(JobCancelled):
        SegmentationPipeline(device="cpu").run(request, str(path), progress, cancel)
    assert tiles_done == ["tile 1/36"]  # stopped after the first of 36 tiles


def test_extent_outside_raster_is_refused_before_running(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "a.tif", scene_with_squares())
    request = SegmentRequest(raster=str(path), query="bright",
                             extent=Extent(xmin=0, ymin=0, xmax=10, ymax=10))
    with pytest.raises(ExtentError):
        SegmentationPipeline(device="cpu").validate(request, str(path))


def test_real_landsat_scene_keeps_off_its_nodata_collar(shared_data: Path) -> None:
    path = shared_data / "landsat_rgb_utm18n.tif"
    result = run(path, query="water", model="index-baseline", options={"min_area": 1e5})
    gdf = result.polygons
    assert len(gdf) > 0
    with rasterio.open(path) as ds:
        assert CRS.from_user_input(gdf.crs) == CRS.from_user_input(ds.crs)
        mask = ds.dataset_mask()
        data_area = unary_union(
            [shape(g) for g, v in shapes(mask, mask=mask > 0, transform=ds.transform)]
        )
    outside = unary_union(list(gdf.geometry)).difference(data_area)
    assert outside.area < 1e-6 * data_area.area


class RecordingSegmenter(Segmenter):
    """Labels nothing; records the image shapes it was given and whether it was closed."""

    instances: list[RecordingSegmenter] = []

    def __init__(self, device: str = "cpu") -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.closed = False
        RecordingSegmenter.instances.append(self)

    def segment(self, image, valid, query) -> TileResult:
        self.shapes.append(image.shape)
        zeros = np.zeros(image.shape[:2], np.int32)
        return TileResult(labels=zeros, scores=zeros.astype(np.float32), class_names=[])

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def recording_models():
    """Models 'test-rec-a', 'test-rec-b' (recording) and 'test-no-weights'."""
    RecordingSegmenter.instances.clear()
    names = ["test-rec-a", "test-rec-b", "test-no-weights"]
    for name in names[:2]:
        registry.register(registry.ModelSpec(
            name=name, modes=(Mode.open_vocabulary,), description="records its input",
            factory=RecordingSegmenter))  # fmt: skip
    registry.register(registry.ModelSpec(
        name="test-no-weights", modes=(Mode.open_vocabulary,), description="never pulled",
        factory=RecordingSegmenter,
        weights=(WeightSpec(repo_id="nobody/no-such-weights", filename="w.bin"),)))  # fmt: skip
    yield
    for name in names:
        registry._SPECS.pop(name, None)


def test_tiles_are_no_larger_than_a_tiny_raster_needs(tmp_path: Path, recording_models) -> None:
    path = write_geotiff(tmp_path / "a.tif", np.full((3, 1, 1), 200, np.uint8))
    run(path, query="anything", model="test-rec-a", options={"tile_size": 8192})
    (model,) = RecordingSegmenter.instances
    assert model.shapes == [(64, 64, 3)]  # not one 8192² tile (67 M pixels of NoData)


def test_model_without_weights_is_refused_at_validation(tmp_path: Path, recording_models) -> None:
    path = write_geotiff(tmp_path / "a.tif", scene_with_squares())
    request = SegmentRequest(raster=str(path), query="trees", model="test-no-weights")
    with pytest.raises(MissingWeightsError, match="no-such-weights"):
        SegmentationPipeline(device="cpu").validate(request, str(path))
    assert RecordingSegmenter.instances == []  # refused before any model was made


def test_least_recently_used_model_is_freed_beyond_the_resident_limit(
    tmp_path: Path, recording_models
) -> None:
    path = write_geotiff(tmp_path / "a.tif", scene_with_squares())
    pipeline = SegmentationPipeline(device="cpu", max_resident=1)
    for name in ("test-rec-a", "test-rec-b"):
        request = SegmentRequest(raster=str(path), query="trees", model=name)
        pipeline.run(request, str(path))
    first, second = RecordingSegmenter.instances
    assert pipeline.loaded_models() == ["test-rec-b"]
    assert first.closed and not second.closed


class CancelAfter(threading.Event):
    """A cancel flag that turns itself on after ``n`` checks (mid-read, deterministically)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0 or super().is_set()


def test_cancel_stops_inside_one_huge_tile_and_the_stage_says_reading(
    tmp_path: Path, recording_models
) -> None:
    from tests.backend.test_raster_reader import mosaic_vrt

    blocks = np.random.default_rng(3).integers(0, 256, (10, 10), dtype=np.uint8)
    path = mosaic_vrt(tmp_path, 100, np.kron(blocks, np.ones((100, 100), np.uint8)))
    # One 8192² tile at 12 source pixels per working pixel: hundreds of row bands.
    request = SegmentRequest(raster=str(path), query="anything", model="test-rec-a",
                             options=SegmentOptions(resolution=12.0, tile_size=8192, overlap=0))
    stages: list[str] = []
    with pytest.raises(JobCancelled):
        SegmentationPipeline(device="cpu").run(
            request, str(path), lambda s, f, m: stages.append(s), CancelAfter(20)
        )
    assert stages[-1] == "reading" and "segmenting" not in stages
    assert RecordingSegmenter.instances[0].shapes == []  # the tile never reached the model


def test_classes_the_model_cannot_answer_are_refused_at_validation(tmp_path: Path) -> None:
    from rs_reasoner.errors import InvalidRequestError

    path = write_geotiff(tmp_path / "a.tif", scene_with_squares())
    pipeline = SegmentationPipeline(device="cpu")
    ok = SegmentRequest(raster=str(path), query="trees, lakes", model="index-baseline")
    pipeline.validate(ok, str(path))
    bad = SegmentRequest(raster=str(path), query="trees, buildings", model="index-baseline")
    with pytest.raises(InvalidRequestError, match="cannot segment 'buildings'"):
        pipeline.validate(bad, str(path))
    assert pipeline.loaded_models() == []  # refused before any model was loaded
