"""Tests for rs_reasoner.vector.vectorize."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.features
from pyproj import CRS
from shapely.geometry import box

from rs_reasoner.raster import PIXEL_SPACE_TRANSFORM
from rs_reasoner.vector import reproject, vectorize
from tests.support.rasters import UTM_CRS, UTM_TRANSFORM


def pixel_box(row: int, col: int, height: int, width: int):
    """Map-space box of a pixel block on the UTM test grid."""
    x0, y0 = UTM_TRANSFORM @ (col, row + height)
    x1, y1 = UTM_TRANSFORM @ (col + width, row)
    return box(x0, y0, x1, y1)


def test_square_comes_back_with_map_coordinates_score_and_area() -> None:
    labels = np.zeros((50, 60), np.int32)
    labels[10:20, 5:25] = 1
    scores = np.where(labels > 0, 0.8, 0.1).astype(np.float32)
    scores[10, 5] = 0.4
    gdf = vectorize(labels, scores, ["roof"], UTM_TRANSFORM, UTM_CRS, attributes={"query": "q"})
    assert list(gdf.columns) == ["label", "score", "area", "query", "geometry"]
    assert len(gdf) == 1
    row = gdf.iloc[0]
    assert row["label"] == "roof" and row["query"] == "q"
    assert row["score"] == pytest.approx((199 * 0.8 + 0.4) / 200, abs=1e-4)
    assert row["area"] == pytest.approx(200 * 4.0)
    assert row.geometry.equals(pixel_box(10, 5, 10, 20))
    assert CRS.from_user_input(gdf.crs) == CRS.from_user_input(UTM_CRS)


def test_adjacent_classes_and_diagonal_touch_stay_separate() -> None:
    labels = np.zeros((20, 20), np.int32)
    labels[0:5, 0:5] = 1
    labels[0:5, 5:10] = 2  # shares an edge with class 1
    labels[5:8, 10:13] = 1  # touches the class 2 block only at a corner
    labels[8:10, 13:15] = 1  # touches the previous block at a corner: 4-connectivity splits
    gdf = vectorize(labels, np.ones_like(labels, np.float32), ["a", "b"], UTM_TRANSFORM, UTM_CRS)
    assert sorted(gdf["label"]) == ["a", "a", "a", "b"]
    assert gdf.geometry.is_valid.all()
    assert gdf.geometry.area.sum() == pytest.approx((25 + 25 + 9 + 4) * 4.0)


def test_hole_is_kept() -> None:
    labels = np.zeros((30, 30), np.int32)
    labels[5:25, 5:25] = 1
    labels[10:15, 10:15] = 0
    geom = vectorize(labels, np.ones((30, 30)), ["x"], UTM_TRANSFORM, UTM_CRS).geometry.iloc[0]
    assert len(geom.interiors) == 1
    assert geom.area == pytest.approx((400 - 25) * 4.0)


def test_invalid_pixels_never_get_polygons() -> None:
    labels = np.ones((10, 10), np.int32)
    valid = np.zeros((10, 10), bool)
    valid[:, 4:] = True
    gdf = vectorize(labels, np.ones((10, 10)), ["x"], UTM_TRANSFORM, UTM_CRS, valid=valid)
    assert gdf.geometry.iloc[0].equals(pixel_box(0, 4, 10, 6))


def test_min_area_and_simplify() -> None:
    labels = np.zeros((40, 40), np.int32)
    labels[2:4, 2:4] = 1  # 4 px = 16 m²
    yy, xx = np.mgrid[:40, :40]
    labels[(yy - 25) ** 2 + (xx - 25) ** 2 < 100] = 1  # a pixelated disc
    scores = np.ones((40, 40))
    full = vectorize(labels, scores, ["x"], UTM_TRANSFORM, UTM_CRS)
    big = vectorize(labels, scores, ["x"], UTM_TRANSFORM, UTM_CRS, min_area=20.0)
    assert len(full) == 2 and len(big) == 1
    smooth = vectorize(labels, scores, ["x"], UTM_TRANSFORM, UTM_CRS, min_area=20, simplify=2.0)
    n_full = len(big.geometry.iloc[0].exterior.coords)
    n_smooth = len(smooth.geometry.iloc[0].exterior.coords)
    assert n_smooth < n_full / 2
    assert smooth.geometry.iloc[0].is_valid
    assert smooth.geometry.iloc[0].symmetric_difference(big.geometry.iloc[0]).area < 0.1 * big[
        "area"
    ].iloc[0]


def test_instances_split_touching_objects_of_one_class() -> None:
    labels = np.zeros((10, 20), np.int32)
    labels[2:8, 2:18] = 1
    instances = np.zeros_like(labels)
    instances[2:8, 2:10] = 1
    instances[2:8, 10:18] = 2
    instances[0, 0] = 3  # an instance id on background is ignored
    gdf = vectorize(
        labels, np.ones((10, 20)), ["car"], UTM_TRANSFORM, UTM_CRS, instances=instances
    )
    assert sorted(gdf["instance"]) == [1, 2]
    assert {round(a) for a in gdf["area"]} == {48 * 4}


def test_empty_result_has_the_columns_and_crs() -> None:
    gdf = vectorize(np.zeros((8, 8), np.int32), np.zeros((8, 8)), ["x"], UTM_TRANSFORM, UTM_CRS,
                    attributes={"model": "m"})
    assert len(gdf) == 0
    assert list(gdf.columns) == ["label", "score", "area", "model", "geometry"]
    assert gdf.crs is not None


def test_non_georeferenced_raster_gives_pixel_space_polygons() -> None:
    labels = np.zeros((10, 10), np.int32)
    labels[1:3, 4:9] = 1
    gdf = vectorize(labels, np.ones((10, 10)), ["x"], PIXEL_SPACE_TRANSFORM, None)
    assert gdf.crs is None
    assert gdf.geometry.iloc[0].equals(box(4, -3, 9, -1))
    with pytest.raises(ValueError):
        reproject(gdf, "EPSG:4326")


def test_geographic_crs_area_is_geodesic_square_metres() -> None:
    # 0.001° pixels at the equator: about 111.3 m x 110.6 m.
    transform = rasterio.transform.from_origin(10.0, 0.01, 0.001, 0.001)
    labels = np.zeros((10, 10), np.int32)
    labels[0:10, 0:10] = 1
    area = vectorize(labels, np.ones((10, 10)), ["x"], transform, "EPSG:4326")["area"].iloc[0]
    assert area == pytest.approx(100 * 111.32 * 110.57, rel=0.01)


def test_reproject_moves_geometry_and_keeps_attributes() -> None:
    labels = np.zeros((10, 10), np.int32)
    labels[2:6, 2:6] = 1
    gdf = vectorize(labels, np.ones((10, 10)), ["x"], UTM_TRANSFORM, UTM_CRS)
    wgs = reproject(gdf, "EPSG:4326")
    assert CRS.from_user_input(wgs.crs).to_epsg() == 4326
    assert wgs["area"].iloc[0] == gdf["area"].iloc[0]
    back = reproject(wgs, UTM_CRS)
    assert back.geometry.iloc[0].symmetric_difference(gdf.geometry.iloc[0]).area < 1e-3


def test_real_building_footprints_round_trip(shared_data: Path) -> None:
    """Rasterise SpaceNet's 43 Atlanta footprints, vectorise, compare with the originals."""
    buildings = gpd.read_file(shared_data / "spacenet_atlanta_buildings.geojson")
    with rasterio.open(shared_data / "spacenet_atlanta_pan_utm16n.tif") as ds:
        transform, shape, crs = ds.transform, ds.shape, ds.crs
    buildings = buildings.to_crs(crs)
    instances = rasterio.features.rasterize(
        ((g, i + 1) for i, g in enumerate(buildings.geometry)), out_shape=shape,
        transform=transform, dtype="int32",
    )
    present = set(np.unique(instances)) - {0}
    labels = (instances > 0).astype(np.int32)
    gdf = vectorize(labels, np.ones(shape), ["building"], transform, crs, instances=instances)
    assert set(gdf["instance"]) == present
    pixel = abs(transform.a * transform.e)
    for _, row in gdf.iterrows():
        original = buildings.geometry.iloc[row["instance"] - 1]
        if original.area < 50 * pixel:
            continue  # small footprints are dominated by pixel edges
        iou = row.geometry.intersection(original).area / row.geometry.union(original).area
        assert iou > 0.8, (row["instance"], iou)


def test_split_instance_is_one_multipolygon_row() -> None:
    labels = np.zeros((10, 20), np.int32)
    labels[1:4, 1:4] = 1
    labels[6:9, 10:19] = 1
    instances = np.where(labels > 0, 7, 0)
    gdf = vectorize(labels, np.ones((10, 20)), ["field"], UTM_TRANSFORM, UTM_CRS,
                    instances=instances)
    assert len(gdf) == 1 and gdf["instance"].iloc[0] == 7
    geom = gdf.geometry.iloc[0]
    assert geom.geom_type == "MultiPolygon" and geom.is_valid
    assert gdf["area"].iloc[0] == pytest.approx((9 + 27) * 4.0)


def test_min_area_fills_small_holes_and_keeps_big_ones() -> None:
    labels = np.ones((30, 30), np.int32)
    labels[5, 5] = 0  # 1 px hole = 4 m²
    labels[10:20, 10:20] = 0  # 100 px hole = 400 m²
    geom = vectorize(labels, np.ones((30, 30)), ["x"], UTM_TRANSFORM, UTM_CRS,
                     min_area=10.0).geometry.iloc[0]
    assert len(geom.interiors) == 1
    assert geom.area == pytest.approx((900 - 100) * 4.0)
