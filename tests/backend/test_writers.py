"""Tests for rs_reasoner.vector.writers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
from pyproj import CRS

from rs_reasoner.errors import OutputError
from rs_reasoner.vector import check_output_path, to_geojson_dict, vectorize, write_vector
from rs_reasoner.vector.writers import driver_for
from tests.support.rasters import CUSTOM_WKT, UTM_CRS, UTM_TRANSFORM


def sample(crs=UTM_CRS, reasoning: str = "because") -> gpd.GeoDataFrame:
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8] = 1
    labels[10:18, 10:18] = 2
    return vectorize(
        labels, np.full((20, 20), 0.75), ["tree", "eau"], UTM_TRANSFORM, crs,
        attributes={"query": "trees, water", "mode": "open_vocabulary", "reasoning": reasoning},
    )


@pytest.mark.parametrize("ext", [".gpkg", ".shp", ".geojson", ".fgb"])
def test_round_trip_keeps_geometry_crs_and_attributes(tmp_path: Path, ext: str) -> None:
    gdf = sample()
    out = write_vector(gdf, tmp_path / "sub" / f"result{ext}")
    back = gpd.read_file(out)
    assert len(back) == 2
    assert CRS.from_user_input(back.crs) == CRS.from_user_input(UTM_CRS)
    assert sorted(back["label"]) == ["eau", "tree"]
    assert back.geometry.area.sum() == pytest.approx(gdf.geometry.area.sum())
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_shapefile_has_sidecars_and_fits_dbase_limits(tmp_path: Path) -> None:
    long_text = "é" * 300  # 600 bytes in UTF-8
    gdf = sample(reasoning=long_text)
    gdf["a_very_long_column_name"] = 1
    out = write_vector(gdf, tmp_path / "r.shp")
    assert {p.suffix for p in tmp_path.iterdir()} == {".shp", ".shx", ".dbf", ".prj", ".cpg"}
    back = gpd.read_file(out)
    assert "a_very_lon" in back.columns
    assert back["reasoning"].iloc[0] == "é" * 127  # 254 bytes, not split inside a character


def test_custom_wkt_crs_survives(tmp_path: Path) -> None:
    out = write_vector(sample(crs=CUSTOM_WKT), tmp_path / "r.gpkg")
    assert CRS.from_user_input(gpd.read_file(out).crs).equals(CRS.from_wkt(CUSTOM_WKT))


def test_empty_layer_is_written(tmp_path: Path) -> None:
    empty = vectorize(np.zeros((4, 4), np.int32), np.zeros((4, 4)), ["x"], UTM_TRANSFORM, UTM_CRS)
    for ext in (".gpkg", ".shp"):
        out = write_vector(empty, tmp_path / f"e{ext}")
        assert len(gpd.read_file(out)) == 0
        assert "Polygon" in pyogrio.read_info(out)["geometry_type"]


def test_failed_write_keeps_the_existing_file(tmp_path: Path, monkeypatch) -> None:
    out = write_vector(sample(), tmp_path / "r.gpkg")
    before = out.read_bytes()

    def broken(*args, **kwargs):
        Path(args[0]).write_bytes(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(gpd.GeoDataFrame, "to_file", lambda self, *a, **k: broken(*a, **k))
    with pytest.raises(OutputError, match="disk full"):
        write_vector(sample(), out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.gpkg"]


def test_overwriting_a_shapefile_replaces_every_part(tmp_path: Path) -> None:
    write_vector(sample(), tmp_path / "r.shp")
    write_vector(sample(crs=None), tmp_path / "r.shp")
    assert not (tmp_path / "r.prj").exists()  # a stale .prj would put the new layer wrong
    assert gpd.read_file(tmp_path / "r.shp").crs is None


@pytest.mark.parametrize("name", ["r.txt", "r", "r.tif"])
def test_unsupported_extension_is_refused_before_work(tmp_path: Path, name: str) -> None:
    with pytest.raises(OutputError, match="unsupported extension") as err:
        check_output_path(tmp_path / name)
    assert ".gpkg" in err.value.hint


def test_output_path_checks(tmp_path: Path) -> None:
    (tmp_path / "dir.gpkg").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_output_path(tmp_path / "dir.gpkg")
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        check_output_path(tmp_path / "file" / "r.gpkg")
    assert check_output_path(tmp_path / "new" / "deeper" / "r.shp").name == "r.shp"
    if os.getuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(OutputError, match="permission"):
            check_output_path(ro / "r.gpkg")
    assert driver_for("A.GPKG") == "GPKG"


def test_geojson_dict_names_its_crs_and_is_plain_json() -> None:
    gdf = sample()
    gdf.loc[0, "score"] = float("nan")
    collection = to_geojson_dict(gdf)
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    text = json.dumps(collection, allow_nan=False)
    back = json.loads(text)
    assert back["features"][0]["properties"]["score"] is None
    assert back["features"][1]["properties"]["label"] == "eau"
    x, y = back["features"][0]["geometry"]["coordinates"][0][0]
    assert 500_000 <= x <= 500_040 and 3_999_960 <= y <= 4_000_000


def test_geojson_dict_custom_wkt_and_no_crs() -> None:
    member = to_geojson_dict(sample(crs=CUSTOM_WKT))["crs"]["properties"]["name"]
    assert CRS.from_user_input(member).equals(CRS.from_wkt(CUSTOM_WKT))
    assert "crs" not in to_geojson_dict(sample(crs=None))
