"""Choosing the layer of a user's vector file: rs_reasoner.vector.layers."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import box

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.vector.layers import (
    check_field_choice,
    check_layer_choice,
    unreadable_layer_error,
)


class _CustomError(InvalidRequestError):
    """Stands in for a caller's own error class (training's LabelLayerError)."""


def _frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"cls": ["a"]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:32617")


@pytest.fixture
def two_layers(tmp_path: Path) -> Path:
    path = tmp_path / "parcels.gpkg"
    _frame().to_file(path, layer="fields")
    _frame().to_file(path, layer="roads", mode="a")
    return path


def test_single_layer_file_needs_no_choice(tmp_path: Path) -> None:
    path = tmp_path / "parcels.geojson"
    _frame().to_file(path)
    check_layer_choice(path, None)


def test_named_layer_of_a_multi_layer_file_is_accepted(two_layers: Path) -> None:
    check_layer_choice(two_layers, "roads")


def test_several_layers_and_none_chosen_lists_them(two_layers: Path) -> None:
    with pytest.raises(InvalidRequestError, match="holds 2 layers: fields, roads") as err:
        check_layer_choice(two_layers, None)
    assert "--layer" in err.value.hint


def test_unknown_layer_lists_the_ones_there(two_layers: Path) -> None:
    with pytest.raises(InvalidRequestError, match="has no layer 'crops'; it has: fields, roads"):
        check_layer_choice(two_layers, "crops")


def test_missing_file_names_what_it_is(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="The area of interest does not exist"):
        check_layer_choice(tmp_path / "nope.gpkg", None, "area of interest")


def test_unreadable_file_is_a_request_error_in_the_callers_class(tmp_path: Path) -> None:
    path = tmp_path / "parcels.gpkg"
    path.write_bytes(b"this is not a GeoPackage\n" * 10)
    with pytest.raises(_CustomError, match="Cannot read the label layer"):
        check_layer_choice(path, None, error=_CustomError)


def test_unreadable_layer_error_keeps_the_first_line_only() -> None:
    err = unreadable_layer_error("x.shp", "label layer", RuntimeError("bad header\nGDAL detail"))
    assert err.message == "Cannot read the label layer x.shp: bad header"
    assert "GDAL can read" in err.hint
    empty = unreadable_layer_error("x.shp", "label layer", ValueError())
    assert empty.message.endswith("ValueError")


def test_field_choice_lists_fields_and_a_near_miss() -> None:
    check_field_choice(["cover", "area"], "cover")
    with pytest.raises(_CustomError, match="no field 'Cover'. Available fields: cover, area.") as e:
        check_field_choice(["cover", "area"], "Cover", _CustomError)
    assert e.value.hint == "Did you mean 'cover'?"
    with pytest.raises(InvalidRequestError, match=r"Available fields: \(none\)") as e:
        check_field_choice([], "cover")
    assert e.value.hint == "Choose the field that holds the class."


def test_polygon_layer_info_refuses_points_and_empty_layers(tmp_path: Path) -> None:
    from shapely.geometry import Point

    from rs_reasoner.vector.layers import polygon_layer_info

    polys = tmp_path / "polys.gpkg"
    gpd.GeoDataFrame({"c": ["a"]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:32617").to_file(polys)
    assert polygon_layer_info(str(polys), None, "label layer", "draw some")["features"] == 1
    points = tmp_path / "points.gpkg"
    gpd.GeoDataFrame({"c": ["a"]}, geometry=[Point(0, 0)], crs="EPSG:32617").to_file(points)
    with pytest.raises(InvalidRequestError, match="examples layer must be polygons.*Point"):
        polygon_layer_info(str(points), None, "examples layer", "draw some")
    empty = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"c": []}, geometry=[], crs="EPSG:32617").to_file(empty)
    with pytest.raises(InvalidRequestError, match="has no features") as info:
        polygon_layer_info(str(empty), None, "label layer", "Digitise some parcels first.")
    assert info.value.hint == "Digitise some parcels first."
