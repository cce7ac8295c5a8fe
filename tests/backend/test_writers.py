"""Tests for rs_reasoner.vector.writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
from pyproj import CRS
from shapely.geometry import box

from rs_reasoner.atomic import sweep_litter
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


# -- atomic under SIGKILL -----------------------------------------------------------------------

#: Seconds each rename takes in the killed writer: a slow disk, so kills land between renames.
SLOW_RENAME_S = 0.03


def _boxes(n: int, label: str) -> gpd.GeoDataFrame:
    x0, y0 = 500_000, 4_000_000
    geoms = [box(x0 + 10 * i, y0, x0 + 10 * i + 5 + i % 3, y0 + 7) for i in range(n)]
    return gpd.GeoDataFrame({"label": [label] * n, "n": range(n)}, geometry=geoms, crs=UTM_CRS)


def _signature(gdf: gpd.GeoDataFrame) -> tuple[int, list[str], list[int], float]:
    assert gdf.geometry.notna().all() and not gdf.geometry.is_empty.any()
    return len(gdf), sorted(set(gdf["label"])), sorted(gdf["n"]), round(gdf.geometry.area.sum(), 6)


def _write_forever(out: str, layers: list[gpd.GeoDataFrame]) -> None:
    """Child process: rewrite ``out`` with each layer in turn until killed."""
    real_replace = os.replace

    def slow_replace(src, dst) -> None:  # noqa: ANN001 - os.replace's arguments
        time.sleep(SLOW_RENAME_S)
        real_replace(src, dst)

    os.replace = slow_replace
    while True:
        for layer in layers:
            write_vector(layer, out)


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="SIGKILL and fork are POSIX")
@pytest.mark.parametrize("ext", [".gpkg", ".shp", ".geojson", ".fgb"])
def test_sigkill_during_writes_leaves_the_old_or_the_new_output(tmp_path: Path, ext: str) -> None:
    old, new = _boxes(3, "old"), _boxes(40, "new")
    expected = [_signature(old), _signature(new)]
    out = tmp_path / f"result{ext}"
    write_vector(old, out)
    rng = random.Random(ext)
    fork = multiprocessing.get_context("fork")
    missing = 0
    for _ in range(12):
        child = fork.Process(target=_write_forever, args=(str(out), [new, old]), daemon=True)
        child.start()
        time.sleep(rng.uniform(0.01, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        if out.exists():  # a reader right after the kill: all old or all new, never a mix
            assert _signature(gpd.read_file(out)) in expected
        else:  # only a shapefile, killed inside its swap: the journal is there to finish it
            assert ext == ".shp"
            assert any((p / "publish.json").is_file() for p in tmp_path.glob(".rs-reasoner-*"))
            missing += 1
        sweep_litter(tmp_path)  # what the next write in this folder does first
        assert _signature(gpd.read_file(out)) in expected
        assert list(tmp_path.glob(".rs-reasoner-*")) == []
    if ext != ".shp":
        assert missing == 0


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_unwritable_place_is_an_output_error_before_writing() -> None:
    """As root os.access allows /proc, where nothing can be created: still a clear error."""
    with pytest.raises(OutputError, match="Cannot write in '/proc'"):
        write_vector(sample(), "/proc/x.gpkg")


def _write_slowly_until_terminated(out: str, layer: gpd.GeoDataFrame, started) -> None:  # noqa: ANN001
    """Child process: a write that is still in GDAL when SIGTERM comes."""
    from rs_reasoner.atomic import exit_on_termination_signals
    from rs_reasoner.vector import writers

    real_write = writers._write

    def slow_write(*args, **kwargs) -> None:  # noqa: ANN002, ANN003
        real_write(*args, **kwargs)
        started.set()
        time.sleep(60)

    writers._write = slow_write
    with exit_on_termination_signals():
        write_vector(layer, out)


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM and fork are POSIX")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_terminated_write_leaves_no_litter_and_the_old_output(tmp_path: Path, sig) -> None:
    out = write_vector(_boxes(3, "old"), tmp_path / "result.shp")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    fork = multiprocessing.get_context("fork")
    started = fork.Event()
    args = (str(out), _boxes(40, "new"), started)
    child = fork.Process(target=_write_slowly_until_terminated, args=args)
    child.start()
    assert started.wait(60)
    assert len(list(tmp_path.glob(".rs-reasoner-*"))) == 1  # the staged new set
    os.kill(child.pid, sig)
    child.join(60)
    assert child.exitcode == 128 + sig
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
