"""The dock against a real backend process (test-only segmenters): real GeoTIFFs, real
QgsTasks, layers checked in map coordinates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QEvent

from rs_reasoner_plugin.api_client import ApiClient
from rs_reasoner_plugin.dock import SegmentDock
from rs_reasoner_plugin.results import GROUP_NAME
from rs_reasoner_plugin.tasks import RunOutcome
from tests.plugin.helpers import (
    PIXEL,
    SQUARES,
    message_texts,
    square_bounds,
    wait_until,
    write_squares_tif,
)

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def dock(iface, clean_project, plugin_settings) -> Any:
    d = SegmentDock(iface, None, iface.mainWindow())
    yield d
    if d.task is not None:
        d.task.cancel()
        wait_until(lambda: d.task is None, 30, "the task to stop")
    d.shutdown()
    d.deleteLater()
    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def run(dock: SegmentDock, timeout: float = 60.0) -> RunOutcome:
    outcomes: list[RunOutcome] = []
    dock.runFinished.connect(outcomes.append)
    task = dock.start_run()
    assert task is not None, message_texts(dock.iface)
    wait_until(lambda: bool(outcomes), timeout, "the run to finish")
    dock.runFinished.disconnect(outcomes.append)
    return outcomes[0]


def result_layers(project: QgsProject) -> list[QgsVectorLayer]:
    group = project.layerTreeRoot().findGroup(GROUP_NAME)
    return [n.layer() for n in group.findLayers()] if group else []


def assert_squares_in(layer: QgsVectorLayer, squares: list[tuple[int, int, int]],
                      tolerance: float = PIXEL / 2) -> None:
    """One polygon per square, corners within ``tolerance`` map units (EPSG:32633)."""
    boxes = [f.geometry().boundingBox() for f in layer.getFeatures()]
    assert len(boxes) == len(squares), [b.toString() for b in boxes]
    for sq in squares:
        xmin, ymin, xmax, ymax = square_bounds(*sq)
        match = [b for b in boxes if b.intersects(QgsRectangle(xmin, ymin, xmax, ymax))]
        assert len(match) == 1, (sq, [b.toString() for b in boxes])
        b = match[0]
        got = (b.xMinimum(), b.yMinimum(), b.xMaximum(), b.yMaximum())
        want = (xmin, ymin, xmax, ymax)
        assert max(abs(g - e) for g, e in zip(got, want, strict=True)) <= tolerance, (got, want)


def test_run_on_geotiff_adds_geopackage_layer_at_the_right_place(
    dock, clean_project, plugin_settings, squares_tif, iface
) -> None:
    raster = QgsRasterLayer(str(squares_tif), "squares")
    assert raster.isValid()
    clean_project.addMapLayer(raster)
    dock.layer_combo.setLayer(raster)
    dock.set_query("bright")
    dock.set_mode("open_vocabulary")
    dock.set_area("layer")
    outcome = run(dock)
    assert outcome.status == "succeeded", (outcome.error, message_texts(iface))
    assert not outcome.uploaded

    layers = result_layers(clean_project)
    assert len(layers) == 1
    layer = layers[0]
    # "query — model — time": what was asked, which model answered, when.
    assert re.fullmatch(r"bright — test-colour — \d\d:\d\d:\d\d", layer.name()), layer.name()
    assert layer.providerType() == "ogr"
    source = layer.source().split("|")[0]
    assert source.endswith(".gpkg") and Path(source).parent == Path(plugin_settings.results_folder)
    assert layer.crs().authid() == "EPSG:32633" == raster.crs().authid()
    assert_squares_in(layer, SQUARES)
    names = layer.fields().names()
    for field in ("label", "score", "area", "query", "mode", "model", "reasoning"):
        assert field in names
    feat = next(layer.getFeatures())
    assert feat["label"] == "bright" and feat["query"] == "bright"
    assert feat["model"] == "test-colour" and feat["mode"] == "open_vocabulary"
    assert abs(feat["area"] - feat.geometry().area()) < 1e-6 * feat.geometry().area() + 1
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert renderer.classAttribute() == "label"
    assert [c.value() for c in renderer.categories()] == ["bright"]
    # The GeoPackage itself holds the CRS (not only the project).
    reopened = QgsVectorLayer(layer.source(), "again", "ogr")
    assert reopened.crs().authid() == "EPSG:32633" and reopened.featureCount() == 2
    assert any("2 polygons" in t for t in message_texts(iface))
    assert dock.segment_button.isEnabled() and not dock.cancel_button.isEnabled()
    # The query went into the history.
    assert dock.query_combo.itemText(0) == "bright"


def test_reasoning_mode_shows_the_reasoning_text(dock, clean_project, squares_tif,
                                                 iface) -> None:
    raster = QgsRasterLayer(str(squares_tif), "squares")
    clean_project.addMapLayer(raster)
    dock.layer_combo.setLayer(raster)
    query = "the largest bright object in the scene"
    dock.set_query(query)
    dock.set_mode("reasoning")
    dock.set_area("layer")
    outcome = run(dock)
    assert outcome.status == "succeeded", (outcome.error, message_texts(iface))
    (layer,) = result_layers(clean_project)
    assert layer.name().startswith(f"{query} — test-reasoning — "), layer.name()
    assert_squares_in(layer, [SQUARES[0]])  # the larger square
    want = f"The largest bright object answers '{query}'."
    assert dock.reasoning.toPlainText() == want
    feat = next(layer.getFeatures())
    assert feat["reasoning"] == want and feat["mode"] == "reasoning"
    assert feat["model"] == "test-reasoning"


def test_map_view_area_in_another_crs_selects_one_square(
    dock, clean_project, squares_tif, iface
) -> None:
    raster = QgsRasterLayer(str(squares_tif), "squares")
    clean_project.addMapLayer(raster)
    canvas = iface.mapCanvas()
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    canvas.setDestinationCrs(wgs84)
    # The first square plus a margin of 10 px, expressed in lon/lat.
    xmin, ymin, xmax, ymax = square_bounds(*SQUARES[0])
    rect = QgsRectangle(xmin - 20, ymin - 20, xmax + 20, ymax + 20)
    to_wgs84 = QgsCoordinateTransform(raster.crs(), wgs84, clean_project)
    canvas.resize(600, 600)
    canvas.setExtent(to_wgs84.transformBoundingBox(rect))
    canvas.refresh()
    dock.layer_combo.setLayer(raster)
    dock.set_query("bright")
    dock.set_area("canvas")
    outcome = run(dock)
    assert outcome.status == "succeeded", (outcome.error, message_texts(iface))
    (layer,) = result_layers(clean_project)
    assert layer.crs().authid() == "EPSG:32633"
    assert_squares_in(layer, [SQUARES[0]])


def test_drawn_rectangle_outside_the_raster_says_what_to_do(
    dock, clean_project, squares_tif, iface
) -> None:
    raster = QgsRasterLayer(str(squares_tif), "squares")
    clean_project.addMapLayer(raster)
    dock.layer_combo.setLayer(raster)
    dock.set_query("bright")
    dock.set_drawn_extent(QgsRectangle(100, 100, 200, 200), raster.crs())
    # Refused before anything is sent, with the way out instead of raw coordinates.
    assert dock.start_run() is None
    (text,) = message_texts(iface)
    assert "does not overlap raster 'squares'" in text and "Zoom to Layer" in text, text
    assert "Layer extent" in text
    assert [item.level() for item in iface.messageBar().items()] == [Qgis.Warning]
    assert result_layers(clean_project) == []
    assert dock.segment_button.isEnabled()


def test_unknown_class_fails_the_job_with_the_backends_detail(
    dock, clean_project, squares_tif, iface
) -> None:
    raster = QgsRasterLayer(str(squares_tif), "squares")
    clean_project.addMapLayer(raster)
    dock.layer_combo.setLayer(raster)
    dock.set_query("purple")
    dock.set_mode("open_vocabulary")
    dock.set_area("layer")
    outcome = run(dock)
    assert outcome.status == "failed"
    assert "test segmenter knows only" in outcome.error.message
    assert any("test segmenter knows only" in t for t in message_texts(iface))


def test_non_file_layer_goes_through_the_upload_path(
    dock, clean_project, squares_tif, iface, backend
) -> None:
    from osgeo import gdal

    # An in-memory GDAL raster: QGIS renders it, the backend cannot open it by path.
    mem_path = "/vsimem/rs_reasoner_test_squares.tif"
    gdal.Translate(mem_path, str(squares_tif))
    try:
        raster = QgsRasterLayer(mem_path, "in memory")
        assert raster.isValid()
        clean_project.addMapLayer(raster)
        dock.layer_combo.setLayer(raster)
        dock.set_query("bright")
        dock.set_area("layer")
        outcome = run(dock)
    finally:
        gdal.Unlink(mem_path)
    assert outcome.status == "succeeded", (outcome.error, message_texts(iface))
    assert outcome.uploaded
    (layer,) = result_layers(clean_project)
    assert layer.crs().authid() == "EPSG:32633"
    assert_squares_in(layer, SQUARES)


def test_xyz_tile_layer_is_rendered_exported_and_uploaded(
    dock, clean_project, tmp_path, iface
) -> None:
    """A web-map-like layer (XYZ tiles, here from file:// so no network is needed): only
    rendered colours exist, so the layer's renderer is exported (RGBA) and uploaded."""
    import subprocess
    import sys

    from osgeo import gdal, osr

    # The squares scene in EPSG:3857 on the zoom-17 tile grid, so the tiles are exact.
    z17 = 40075016.68557849 / 256 / 2**17
    tx, ty = 70997, 51404  # a tile near (15 E, 36 N)
    x0, y0 = -20037508.342789244 + tx * 256 * z17, 20037508.342789244 - ty * 256 * z17
    src = write_squares_tif(tmp_path / "merc.tif", epsg=None)
    ds = gdal.Open(str(src), gdal.GA_Update)
    ds.SetGeoTransform((x0, z17, 0.0, y0, 0.0, -z17))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3857)
    ds.SetProjection(srs.ExportToWkt())
    ds = None
    tiles = tmp_path / "tiles"
    subprocess.run([sys.executable, "-m", "osgeo_utils.gdal2tiles", "--xyz", "-z", "17",
                    "-w", "none", "-r", "near", "-q", str(src), str(tiles)], check=True,
                   timeout=120)
    url = (tiles.as_uri() + "/{z}/{x}/{y}.png").replace("{", "%7B").replace("}", "%7D")
    raster = QgsRasterLayer(f"type=xyz&url={url}&zmin=17&zmax=17", "tiles", "wms")
    assert raster.isValid() and raster.crs().authid() == "EPSG:3857"
    clean_project.addMapLayer(raster)
    dock.layer_combo.setLayer(raster)
    dock.set_query("bright")
    dock.set_drawn_extent(QgsRectangle(x0, y0 - 300 * z17, x0 + 400 * z17, y0), raster.crs())
    dock.resolution_spin.setValue(z17)
    outcome = run(dock)
    assert outcome.status == "succeeded", (outcome.error, message_texts(iface))
    assert outcome.uploaded
    (layer,) = result_layers(clean_project)
    assert layer.crs().authid() == "EPSG:3857"
    boxes = [f.geometry().boundingBox() for f in layer.getFeatures()]
    assert len(boxes) == 2, [b.toString() for b in boxes]
    # Within one tile pixel, plus 1 cm for the polygons' float noise (~2 mm on every edge):
    # the tiles are exact, but QGIS 3.44 draws some XYZ tiles one whole pixel off when it
    # renders them (a square one row higher, a tile-crossing square one column narrower).
    tolerance = z17 + 0.01
    for r, c, size in SQUARES:
        want = (x0 + c * z17, y0 - (r + size) * z17, x0 + (c + size) * z17, y0 - r * z17)
        assert any(max(abs(a - b) for a, b in zip(
            (bx.xMinimum(), bx.yMinimum(), bx.xMaximum(), bx.yMaximum()), want, strict=True))
            <= tolerance for bx in boxes), (want, [b.toString() for b in boxes])


def test_vrt_with_always_upload_at_a_coarser_resolution(
    dock, clean_project, plugin_settings, squares_tif, iface
) -> None:
    from osgeo import gdal

    vrt = squares_tif.with_suffix(".vrt")
    gdal.BuildVRT(str(vrt), [str(squares_tif)])
    plugin_settings.always_upload = True
    plugin_settings.save()
    raster = QgsRasterLayer(str(vrt), "vrt")
    clean_project.addMapLayer(raster)
    dock.layer_combo.setLayer(raster)
    dock.set_query("bright")
    dock.set_area("layer")
    dock.resolution_spin.setValue(2 * PIXEL)  # 4 m pixels: corners still within 2 m
    outcome = run(dock)
    assert outcome.status == "succeeded", (outcome.error, message_texts(iface))
    assert outcome.uploaded
    (layer,) = result_layers(clean_project)
    assert_squares_in(layer, SQUARES, tolerance=PIXEL)


def test_project_crs_output_reprojects_the_polygons(
    dock, clean_project, plugin_settings, squares_tif, iface
) -> None:
    plugin_settings.output_crs = "project"
    plugin_settings.save()
    clean_project.setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    raster = QgsRasterLayer(str(squares_tif), "squares")
    clean_project.addMapLayer(raster)
    clean_project.setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    dock.layer_combo.setLayer(raster)
    dock.set_query("bright")
    dock.set_area("layer")
    outcome = run(dock)
    assert outcome.status == "succeeded", (outcome.error, message_texts(iface))
    (layer,) = result_layers(clean_project)
    assert layer.crs().authid() == "EPSG:4326"
    back = QgsCoordinateTransform(layer.crs(), raster.crs(), clean_project)
    boxes = []
    for f in layer.getFeatures():
        g = f.geometry()
        g.transform(back)
        boxes.append(g.boundingBox())
    assert len(boxes) == 2
    xmin, ymin, xmax, ymax = square_bounds(*SQUARES[0])
    assert any(abs(b.xMinimum() - xmin) < PIXEL and abs(b.yMaximum() - ymax) < PIXEL
               for b in boxes)


def test_selected_polygons_limit_and_clip_the_result(
    dock, clean_project, squares_tif, iface
) -> None:
    from qgis.core import QgsFeature, QgsGeometry

    raster = QgsRasterLayer(str(squares_tif), "squares")
    mask = QgsVectorLayer("Polygon?crs=EPSG:32633", "aoi", "memory")
    xmin, ymin, xmax, ymax = square_bounds(*SQUARES[0])
    # Left half of the first square only.
    half = QgsRectangle(xmin - 10, ymin - 10, (xmin + xmax) / 2, ymax + 10)
    f = QgsFeature()
    f.setGeometry(QgsGeometry.fromRect(half))
    mask.dataProvider().addFeatures([f])
    clean_project.addMapLayers([raster, mask])
    mask.selectAll()
    dock.layer_combo.setLayer(raster)
    dock.mask_combo.setLayer(mask)
    dock.set_query("bright")
    dock.set_area("selection")
    outcome = run(dock)
    assert outcome.status == "succeeded", (outcome.error, message_texts(iface))
    (layer,) = result_layers(clean_project)
    feats = list(layer.getFeatures())
    assert len(feats) == 1
    b = feats[0].geometry().boundingBox()
    assert abs(b.xMaximum() - (xmin + xmax) / 2) < 1e-6
    assert abs(b.xMinimum() - xmin) <= PIXEL / 2
    assert abs(feats[0]["area"] - feats[0].geometry().area()) < 1e-6


def test_cancel_stops_a_running_job(dock, clean_project, squares_tif, iface, backend) -> None:
    raster = QgsRasterLayer(str(squares_tif), "squares")
    clean_project.addMapLayer(raster)
    dock.layer_combo.setLayer(raster)
    dock.set_query("bright")
    dock.set_mode("open_vocabulary")
    dock.set_area("layer")
    dock.model_combo.setEditText("test-slow")
    dock.tile_spin.setValue(64)  # 5 x 7 tiles of 0.5 s: ~17 s if not cancelled
    outcomes: list[RunOutcome] = []
    dock.runFinished.connect(outcomes.append)
    task = dock.start_run()
    assert task is not None, message_texts(iface)
    assert dock.cancel_button.isEnabled() and not dock.segment_button.isEnabled()
    wait_until(lambda: task.job_id is not None and "segmenting" in dock.stage_label.text(),
               30, "the job to start segmenting")
    job_id = task.job_id
    dock.cancel_button.click()
    wait_until(lambda: bool(outcomes), 15, "the cancelled run to end")
    assert outcomes[0].status == "cancelled"
    info = ApiClient(backend.url, backend.token).job(job_id)
    assert info["status"] == "cancelled", info
    assert info["progress"] < 0.9
    assert result_layers(clean_project) == []
    assert any("cancelled" in t.lower() for t in message_texts(iface))
    assert dock.segment_button.isEnabled() and not dock.cancel_button.isEnabled()


def test_status_line_shows_device_and_models(dock, backend) -> None:
    statuses: list[Any] = []
    dock.statusChanged.connect(statuses.append)
    dock.refresh_status()
    wait_until(lambda: bool(statuses), 30, "the backend status")
    status = statuses[0]
    assert status.connected, status.error
    text = dock.status_label.text()
    assert "connected" in text and "device cpu" in text and "models loaded" in text
    names = [dock.model_combo.itemData(i) for i in range(dock.model_combo.count())]
    assert "test-colour" in names and "test-slow" in names


def test_non_georeferenced_raster_lines_up_with_qgis_pixel_space(
    dock, clean_project, tmp_path, iface
) -> None:
    path = write_squares_tif(tmp_path / "plain.tif", georeferenced=False)
    raster = QgsRasterLayer(str(path), "plain")
    clean_project.addMapLayer(raster)
    dock.layer_combo.setLayer(raster)
    dock.set_query("bright")
    dock.set_area("layer")
    outcome = run(dock)
    assert outcome.status == "succeeded", (outcome.error, message_texts(iface))
    assert not outcome.uploaded
    (layer,) = result_layers(clean_project)
    r, c, s = SQUARES[0]
    # QGIS shows a raster without georeferencing with x = column, y = -row.
    boxes = [f.geometry().boundingBox() for f in layer.getFeatures()]
    assert any(abs(b.xMinimum() - c) < 0.51 and abs(b.yMaximum() - (-r)) < 0.51
               and abs(b.yMinimum() - (-(r + s))) < 0.51 for b in boxes), [
        b.toString() for b in boxes]
    ext = raster.extent()
    assert ext.yMaximum() == 0 and ext.yMinimum() < 0  # the convention the test relies on
