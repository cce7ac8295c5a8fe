"""The Processing algorithm through processing.run and qgis_process; export of a result as
Shapefile (with .prj), GeoPackage and GeoJSON, read back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessingException,
    QgsRectangle,
    QgsVectorLayer,
)

import rs_reasoner_plugin
from rs_reasoner_plugin.export import export_layer
from tests.plugin.helpers import PIXEL, SQUARES, reprojected, square_bounds, unpacked_plugin

ALG = "rsreasoner:segment_by_description"
pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def provider(iface, plugin_settings) -> Any:
    plugin = rs_reasoner_plugin.classFactory(iface)
    plugin.initProcessing()
    yield plugin.provider
    plugin.unload()


def boxes_of(layer: QgsVectorLayer) -> list[QgsRectangle]:
    return [f.geometry().boundingBox() for f in layer.getFeatures()]


def assert_matches(boxes: list[QgsRectangle], squares: list[tuple[int, int, int]]) -> None:
    assert len(boxes) == len(squares), [b.toString() for b in boxes]
    for sq in squares:
        xmin, ymin, xmax, ymax = square_bounds(*sq)
        assert any(abs(b.xMinimum() - xmin) <= PIXEL / 2 and abs(b.yMinimum() - ymin) <= PIXEL / 2
                   and abs(b.xMaximum() - xmax) <= PIXEL / 2
                   and abs(b.yMaximum() - ymax) <= PIXEL / 2 for b in boxes), (
            sq, [b.toString() for b in boxes])


def test_processing_run_whole_raster_to_a_temporary_layer(provider, squares_tif) -> None:
    import processing

    result = processing.run(ALG, {
        "INPUT": str(squares_tif), "QUERY": "bright", "MODE": 2, "OUTPUT": "TEMPORARY_OUTPUT",
    })
    layer = result["OUTPUT"]
    assert isinstance(layer, QgsVectorLayer) and layer.isValid()
    assert layer.crs().authid() == "EPSG:32633"
    assert result["FEATURE_COUNT"] == 2
    assert_matches(boxes_of(layer), SQUARES)
    assert {f["label"] for f in layer.getFeatures()} == {"bright"}


def test_processing_run_with_an_extent_to_a_shapefile(provider, squares_tif, tmp_path) -> None:
    import processing

    xmin, ymin, xmax, ymax = square_bounds(*SQUARES[1])
    out = tmp_path / "second.shp"
    result = processing.run(ALG, {
        "INPUT": str(squares_tif),
        "EXTENT": f"{xmin - 20},{xmax + 20},{ymin - 20},{ymax + 20} [EPSG:32633]",
        "QUERY": "bright",
        "OUTPUT": str(out),
    })
    assert result["OUTPUT"] == str(out)
    assert out.with_suffix(".prj").exists()
    layer = QgsVectorLayer(str(out), "second", "ogr")
    assert layer.crs().authid() == "EPSG:32633"
    assert_matches(boxes_of(layer), [SQUARES[1]])


def test_processing_reports_backend_errors_as_processing_exceptions(provider,
                                                                    squares_tif) -> None:
    import processing

    with pytest.raises(QgsProcessingException, match="test segmenter knows only"):
        processing.run(ALG, {"INPUT": str(squares_tif), "QUERY": "purple", "MODE": 2,
                             "OUTPUT": "TEMPORARY_OUTPUT"})


def test_export_round_trips_as_shapefile_geopackage_and_geojson(provider, squares_tif,
                                                                tmp_path) -> None:
    import processing

    src = processing.run(ALG, {"INPUT": str(squares_tif), "QUERY": "bright",
                               "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
    want = sorted((round(f["score"], 4), round(f.geometry().area(), 3))
                  for f in src.getFeatures())
    for name in ("out.shp", "out.gpkg", "out.geojson"):
        path = export_layer(src, str(tmp_path / name))
        layer = QgsVectorLayer(path, name, "ogr")
        assert layer.isValid(), path
        if name.endswith(".geojson"):
            # RFC 7946: WGS 84 (the areas are compared back in the source CRS).
            assert layer.crs() == QgsCoordinateReferenceSystem("EPSG:4326"), layer.crs()
            layer = reprojected(layer, "EPSG:32633")
        else:
            assert layer.crs() == QgsCoordinateReferenceSystem("EPSG:32633"), (name, layer.crs())
        got = sorted((round(f["score"], 4), f.geometry().area()) for f in layer.getFeatures())
        # RFC 7946 keeps 7 decimals of a degree (1 cm): areas agree to 0.01 %.
        assert [s for s, _ in got] == [s for s, _ in want], name
        assert [a for _, a in got] == pytest.approx([a for _, a in want], rel=1e-4), name
        names = layer.fields().names()
        for field in ("label", "score", "area", "query", "mode", "model", "reasoning"):
            assert field in names, (name, names)
        assert_matches(boxes_of(layer), SQUARES)
    prj = (tmp_path / "out.prj").read_text()
    assert "UTM_Zone_33N" in prj  # ESRI WKT


# -- qgis_process ------------------------------------------------------------------------


def qgis_process_cmd() -> list[str]:
    """qgis_process; Debian's wrapper passes --noversioncheck, which 3.22's binary rejects,
    so fall back to the binary it wraps."""
    for exe in ("qgis_process", "qgis_process.bin"):
        path = shutil.which(exe)
        if path is None:
            continue
        probe = subprocess.run([path, "--version"], capture_output=True, text=True,
                               env=dict(os.environ, QT_QPA_PLATFORM="offscreen"), timeout=120)
        if probe.returncode == 0:
            return [path]
    pytest.skip("qgis_process is not installed (make qgis-deps)")


def test_qgis_process_runs_the_algorithm(squares_tif, tmp_path, session_dir) -> None:
    cmd = qgis_process_cmd()
    plugins = unpacked_plugin(tmp_path / "plugins")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=str(plugins),
               HOME=str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    env["XDG_CONFIG_HOME"] = str(tmp_path / "home" / ".config")
    # XDG_STATE_HOME stays the session's: the backend fixture's state file is there.

    def qp(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env,
                              timeout=180, cwd=tmp_path)

    enabled = qp("plugins", "enable", "rs_reasoner_plugin")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    listed = qp("plugins")
    assert "* rs_reasoner_plugin" in listed.stdout, listed.stdout + listed.stderr
    helped = qp("help", ALG)
    assert helped.returncode == 0 and "QUERY" in helped.stdout, helped.stdout + helped.stderr

    out = tmp_path / "qp.gpkg"
    ran = qp("--json", "run", ALG, "--", f"INPUT={squares_tif}", "QUERY=bright", "MODE=2",
             f"OUTPUT={out}")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    answer = json.loads(ran.stdout[ran.stdout.index("{"):])
    assert answer["results"]["FEATURE_COUNT"] == 2
    layer = QgsVectorLayer(str(out), "qp", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32633"
    assert_matches(boxes_of(layer), SQUARES)
