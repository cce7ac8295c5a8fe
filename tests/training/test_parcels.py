"""Parcels rasterised onto the raster grid: right pixels, CRS handling, clear errors."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from shapely.affinity import translate
from shapely.geometry import Point, box

from rs_reasoner_training.data.dataset import IGNORE_INDEX
from rs_reasoner_training.data.parcels import label_raster, load_parcels
from rs_reasoner_training.errors import LabelLayerError

RASTER = "spacenet_atlanta_pan_utm16n.tif"
BUILDINGS = "spacenet_atlanta_buildings.geojson"


@pytest.fixture
def atlanta(shared_data):
    raster = shared_data / RASTER
    frame = gpd.read_file(shared_data / BUILDINGS)
    with rasterio.open(raster) as ds:
        grid = ds.transform, ds.shape, ds.crs, tuple(ds.bounds)
    return raster, frame, grid


def _pixel_centres(transform, shape):
    rows, cols = np.indices(shape)
    xs, ys = transform @ (cols.ravel() + 0.5, rows.ravel() + 0.5)
    return np.asarray(xs), np.asarray(ys)


def test_labels_are_on_the_pixels_whose_centres_lie_in_parcels(atlanta):
    raster, frame, (transform, shape, _, _) = atlanta
    labels, parcels = label_raster(raster, frame, "building", background="other")
    assert parcels.class_names == ["other", "yes"] and parcels.background_id == 0
    union = shapely.union_all(frame.geometry.values)
    xs, ys = _pixel_centres(transform, shape)
    assert np.array_equal(labels.ravel() == 1, shapely.contains_xy(union, xs, ys))
    # Map coordinates of a known parcel: its interior point falls on a "yes" pixel, a
    # point 3 m outside every parcel on "other"; area matches the pixel count (0.5 m).
    first = frame.geometry.iloc[0].buffer(-0.75)
    row, col = rasterio.transform.rowcol(transform, *first.representative_point().coords[0])
    assert labels[row, col] == 1
    far = np.flatnonzero(~shapely.contains_xy(union.buffer(3.0), xs, ys))[::997]
    assert len(far) > 100 and (labels.ravel()[far] == 0).all()
    assert not union.buffer(3.0).contains(Point(xs[far[0]], ys[far[0]]))
    assert (labels == 1).sum() * 0.25 == pytest.approx(frame.area.sum(), rel=0.01)


def test_unlabelled_pixels_are_ignored_without_background(atlanta):
    raster, frame, _ = atlanta
    two = frame.assign(kind=np.where(frame.area < 200, "small", "large"))
    labels, parcels = label_raster(raster, two, "kind")
    assert parcels.class_names == ["large", "small"]
    assert set(np.unique(labels)) == {0, 1, IGNORE_INDEX}
    assert (labels != IGNORE_INDEX).sum() * 0.25 == pytest.approx(frame.area.sum(), rel=0.01)


def test_parcels_in_another_crs_are_reprojected(atlanta):
    raster, frame, _ = atlanta
    reference, _ = label_raster(raster, frame, "building", background="other")
    labels, parcels = label_raster(raster, frame.to_crs(4326), "building", background="other")
    assert any("reprojected" in n for n in parcels.notes)
    parcel_pixels = reference == 1
    agree = (labels[parcel_pixels] == 1).mean()
    assert agree > 0.995
    assert (labels != reference).sum() < 0.005 * parcel_pixels.sum()


def test_aoi_clips_labels(atlanta):
    raster, frame, (transform, shape, _, bounds) = atlanta
    left, bottom, right, top = bounds
    aoi = box(left, bottom, (left + right) / 2, top)
    labels, parcels = label_raster(raster, frame, "building", background="other", aoi=aoi)
    assert (labels[:, shape[1] // 2 + 1 :] == IGNORE_INDEX).all()
    assert (labels[:, : shape[1] // 2] != IGNORE_INDEX).all()
    assert len(parcels.frame) < len(frame)
    aoi_far = translate(aoi, 1e5, 0)
    with pytest.raises(LabelLayerError, match="does not overlap the raster"):
        label_raster(raster, frame, "building", background="other", aoi=aoi_far)


def test_bad_inputs_give_clear_errors(atlanta, tmp_path):
    raster, frame, (_, _, crs, bounds) = atlanta
    with pytest.raises(LabelLayerError) as err:
        load_parcels(frame, "Building", crs, bounds)
    assert "no field 'Building'" in err.value.message and "osm_id" in err.value.message
    assert "'building'" in err.value.hint
    shifted = frame.set_geometry(frame.geometry.translate(1e5, 0))
    with pytest.raises(LabelLayerError, match="No parcel lies on the raster") as err:
        load_parcels(shifted, "building", crs, bounds, background="other")
    assert "CRS" in err.value.hint
    with pytest.raises(LabelLayerError, match="no features"):
        load_parcels(frame.iloc[0:0], "building", crs, bounds)
    with pytest.raises(LabelLayerError, match="at least two classes") as err:
        load_parcels(frame, "building", crs, bounds)
    assert "background" in err.value.hint
    points = frame.set_geometry(frame.geometry.centroid)
    with pytest.raises(LabelLayerError, match="must be polygons"):
        load_parcels(points, "building", crs, bounds, background="other")
    with pytest.raises(LabelLayerError, match="No parcel has a value"):
        load_parcels(frame.assign(building=None), "building", crs, bounds, background="o")
    with pytest.raises(LabelLayerError, match="does not exist"):
        load_parcels(tmp_path / "nope.gpkg", "building", crs, bounds)
    # Some parcels off the raster: dropped with a note, not an error.
    mixed = frame.copy()
    mixed.loc[:4, "geometry"] = mixed.geometry[:5].translate(1e5, 0)
    parcels = load_parcels(mixed, "building", crs, bounds, background="other")
    assert len(parcels.frame) == len(frame) - 5
    assert any("outside the raster" in n for n in parcels.notes)


def test_multi_layer_geopackage_needs_a_layer_name(atlanta, tmp_path):
    _, frame, (_, _, crs, bounds) = atlanta
    path = tmp_path / "labels.gpkg"
    small = frame[["building", "geometry"]]
    small.to_file(path, layer="buildings")
    small.iloc[:3].to_file(path, layer="other")
    with pytest.raises(LabelLayerError, match="holds 2 layers: buildings, other"):
        load_parcels(path, "building", crs, bounds, background="bg")
    parcels = load_parcels(path, "building", crs, bounds, background="bg", layer="buildings")
    assert len(parcels.frame) == len(frame)


def test_aoi_layer_without_parcels_names_the_area_of_interest(atlanta):
    raster, frame, (transform, shape, crs, bounds) = atlanta
    union = shapely.union_all(frame.geometry.values)
    xs, ys = _pixel_centres(transform, shape)
    empty = np.flatnonzero(~shapely.contains_xy(union.buffer(5.0), xs, ys))[0]
    spot = Point(xs[empty], ys[empty]).buffer(2.0)
    assert not frame.intersects(spot).any()
    aoi = gpd.GeoDataFrame(geometry=[spot], crs=crs)  # a layer, not a geometry
    with pytest.raises(LabelLayerError, match="on the raster inside the area of interest"):
        load_parcels(frame, "building", crs, bounds, aoi=aoi, background="other")
