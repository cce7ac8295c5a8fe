"""Click-to-segment in QGIS against a real backend whose SAM is the box-shaped stand-in
(tests.support.interactive:rect): boxes and clicks drawn on the canvas come back as the
previewed polygon where they were drawn, one session per view, Enter keeps the polygon in
the result layer, Esc discards. A selected polygon of a result layer is refined by the same
clicks (parts added or cut out, written back as one undoable edit); a raster that is no
file is uploaded for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED_DATA
from tests.plugin import conftest
from tests.plugin.helpers import wait_until

NEON = SHARED_DATA / "neon_osbs_rgb_10cm_utm17n.tif"
#: Side of the square the stand-in gives a lone click (its CLICK_SQUARE, 10 px), in metres.
CLICK_SIDE = 10 * 0.1


@pytest.fixture(scope="module")
def click_backend(qgis_app: Any, session_dir: Path) -> Iterator[Any]:
    folder = session_dir / "click_backend"
    plain_env = conftest.backend_env

    def env() -> dict[str, str]:
        out = plain_env()
        out["RS_REASONER_INTERACTIVE_PREDICTOR"] = "tests.support.interactive:rect"
        return out

    conftest.backend_env = env
    try:
        backend = conftest.start_backend(folder / "backend.json", folder / "backend.log")
    finally:
        conftest.backend_env = plain_env
    yield backend
    backend.stop()


@pytest.fixture
def tool(click_backend: Any, iface: Any, clean_project: Any, plugin_settings: Any) -> Any:
    from qgis.core import QgsApplication, QgsRasterLayer

    from rs_reasoner_plugin.backend_process import BackendProcess
    from rs_reasoner_plugin.click_tool import ClickSegmentTool

    if not NEON.is_file():
        pytest.skip(f"sample raster {NEON} is missing")
    plugin_settings.state_file = str(click_backend.state_file)
    plugin_settings.save()
    layer = QgsRasterLayer(str(NEON), "neon")
    assert layer.isValid()
    clean_project.addMapLayer(layer)
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(layer.crs())
    canvas.setLayers([layer])
    # The canvas takes its size from the window's layout when events run: let it settle
    # before setting the view, or the view changes under the first session.
    for _ in range(3):
        QgsApplication.processEvents()
        canvas.setExtent(layer.extent())
        wait_until(lambda: not canvas.isDrawing(), 30, "the canvas")
    t = ClickSegmentTool(canvas, BackendProcess())
    canvas.setMapTool(t)
    yield t
    canvas.unsetMapTool(t)


def answered(tool: Any) -> None:
    wait_until(lambda: tool.task is None and not tool._pending, 60, "the backend's answer")


def test_box_then_click_previews_where_drawn_and_enter_keeps_it(tool: Any) -> None:
    from qgis.core import QgsGeometry, QgsPointXY, QgsRectangle
    from qgis.PyQt.QtCore import QEvent, Qt
    from qgis.PyQt.QtGui import QKeyEvent

    ext = tool.raster_layer().extent()
    x0, y0 = ext.xMinimum(), ext.yMinimum()
    drawn = QgsRectangle(x0 + 10, y0 + 12, x0 + 17.5, y0 + 15)
    tool.set_box(drawn)
    answered(tool)
    assert tool.preview.symDifference(QgsGeometry.fromRect(drawn)).area() < 1e-6
    first_session = tool.session["id"]
    assert tool.band.asGeometry().area() == pytest.approx(drawn.area(), rel=1e-6)

    tool.clear()
    tool.add_point(QgsPointXY(x0 + 20, y0 + 20))
    answered(tool)
    square = QgsRectangle(x0 + 20 - CLICK_SIDE / 2, y0 + 20 - CLICK_SIDE / 2,
                          x0 + 20 + CLICK_SIDE / 2, y0 + 20 + CLICK_SIDE / 2)
    assert tool.preview.symDifference(QgsGeometry.fromRect(square)).area() < 1e-6
    assert tool.session["id"] == first_session  # same view: the embedding is reused
    assert tool.preview_info["latency_ms"] > 0

    tool.keyPressEvent(QKeyEvent(QEvent.KeyPress, Qt.Key_Return, Qt.NoModifier))
    layer = tool.result_layer
    assert layer is not None and layer.featureCount() == 1
    feature = next(layer.getFeatures())
    assert feature.geometry().area() == pytest.approx(CLICK_SIDE ** 2, rel=1e-6)
    assert feature["area"] == pytest.approx(CLICK_SIDE ** 2)
    assert tool.points == [] and tool.preview.isEmpty()  # ready for the next object


def test_mouse_clicks_drag_and_escape(tool: Any, iface: Any) -> None:
    from qgis.core import QgsGeometry, QgsPointXY, QgsRectangle
    from qgis.gui import QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, QPoint, Qt
    from qgis.PyQt.QtGui import QKeyEvent

    canvas = iface.mapCanvas()
    to_pixel = canvas.getCoordinateTransform()
    ext = tool.raster_layer().extent()
    centre = QgsPointXY(ext.center().x(), ext.center().y())
    px = to_pixel.transform(centre)
    at = QPoint(int(px.x()), int(px.y()))

    def mouse(kind: Any, pos: QPoint, button: Any = Qt.LeftButton) -> Any:
        return QgsMapMouseEvent(canvas, kind, pos, button)

    tool.canvasPressEvent(mouse(QEvent.MouseButtonPress, at))
    tool.canvasReleaseEvent(mouse(QEvent.MouseButtonRelease, at))
    answered(tool)
    clicked = tool.toMapCoordinates(at)
    assert tool.points == [(clicked, True)]
    assert tool.preview.contains(QgsGeometry.fromPointXY(clicked))

    tool.canvasPressEvent(mouse(QEvent.MouseButtonPress, at, Qt.RightButton))
    tool.canvasReleaseEvent(mouse(QEvent.MouseButtonRelease, at, Qt.RightButton))
    answered(tool)
    assert [p for _, p in tool.points] == [True, False]

    size = canvas.mapSettings().outputSize()
    end = QPoint(at.x() + max(size.width() // 6, 10), at.y() + max(size.height() // 6, 10))
    tool.canvasPressEvent(mouse(QEvent.MouseButtonPress, at))
    tool.canvasMoveEvent(mouse(QEvent.MouseMove, end))
    tool.canvasReleaseEvent(mouse(QEvent.MouseButtonRelease, end))
    answered(tool)
    box = QgsRectangle(tool.toMapCoordinates(at), tool.toMapCoordinates(end))
    assert tool.box is not None and tool.box == box
    # The stand-in answers a box with the box, on the raster only, snapped to its 10 cm
    # pixels: within a pixel-wide rim of the expected rectangle.
    expected = QgsGeometry.fromRect(box).intersection(QgsGeometry.fromRect(ext))
    rim = expected.length() * 0.1
    assert tool.preview.symDifference(expected).area() < rim

    tool.keyPressEvent(QKeyEvent(QEvent.KeyPress, Qt.Key_Escape, Qt.NoModifier))
    assert tool.points == [] and tool.box is None and tool.preview.isEmpty()
    assert tool.result_layer is None  # nothing was accepted


def test_panning_out_of_the_view_opens_a_new_session(tool: Any, iface: Any) -> None:
    from qgis.core import QgsPointXY, QgsRectangle

    ext = tool.raster_layer().extent()
    tool.add_point(QgsPointXY(ext.center().x(), ext.center().y()))
    answered(tool)
    first = tool.session["id"]
    canvas = iface.mapCanvas()
    view = canvas.extent()
    shift = view.width() / 2
    canvas.setExtent(QgsRectangle(view.xMinimum() + shift, view.yMinimum(),
                                  view.xMaximum() + shift, view.yMaximum()))
    tool.clear()
    tool.add_point(QgsPointXY(ext.xMaximum() - 1, ext.center().y()))
    answered(tool)
    assert tool.session["id"] != first
    assert not tool.preview.isEmpty()


def test_outside_click_and_no_raster_are_explained(tool: Any, clean_project: Any) -> None:
    from qgis.core import QgsPointXY

    messages: list[str] = []
    tool.failed.connect(messages.append)
    ext = tool.raster_layer().extent()
    tool.add_point(QgsPointXY(ext.xMaximum() + 1000, ext.yMaximum() + 1000))
    answered(tool)
    assert messages and "outside the extent" in messages[-1]
    clean_project.removeAllMapLayers()
    tool.canvas().setLayers([])
    tool.clear()
    tool.add_point(QgsPointXY(ext.center().x(), ext.center().y()))
    assert "needs a raster layer" in messages[-1]


# -- refining a result ------------------------------------------------------------------------


def result_gpkg(path: Path, crs_wkt: str, squares: list[tuple[float, float, float, float]]
                ) -> Any:
    """A result-like GeoPackage layer (label, score, area) with one polygon per square."""
    from osgeo import ogr, osr
    from qgis.core import QgsVectorLayer

    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs_wkt)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    table = ds.CreateLayer("trees", srs, ogr.wkbMultiPolygon)
    for name, kind in (("label", ogr.OFTString), ("score", ogr.OFTReal), ("area", ogr.OFTReal)):
        table.CreateField(ogr.FieldDefn(name, kind))
    for xmin, ymin, xmax, ymax in squares:
        f = ogr.Feature(table.GetLayerDefn())
        f.SetField("label", "trees")
        f.SetField("score", 0.8)
        f.SetField("area", (xmax - xmin) * (ymax - ymin))
        f.SetGeometry(ogr.CreateGeometryFromWkt(
            f"MULTIPOLYGON ((({xmin} {ymin}, {xmax} {ymin}, {xmax} {ymax}, {xmin} {ymax}, "
            f"{xmin} {ymin})))"))
        table.CreateFeature(f)
    ds = None
    layer = QgsVectorLayer(f"{path}|layername=trees", "trees — index-baseline — 12:00", "ogr")
    assert layer.isValid()
    return layer


def test_selected_result_polygon_gains_and_loses_parts_as_one_undoable_edit(
    tool: Any, iface: Any, clean_project: Any, tmp_path: Path
) -> None:
    from qgis.core import QgsGeometry, QgsPointXY, QgsRectangle, QgsVectorLayer
    from qgis.gui import QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, QPoint, Qt
    from qgis.PyQt.QtGui import QKeyEvent

    raster = tool.raster_layer()
    ext = raster.extent()
    x0, y0 = ext.xMinimum(), ext.yMinimum()
    far = (x0 + 30, y0 + 30, x0 + 35, y0 + 35)
    layer = result_gpkg(tmp_path / "trees.gpkg", raster.crs().toWkt(),
                        [(x0 + 10, y0 + 10, x0 + 20, y0 + 20), far])
    clean_project.addMapLayer(layer)
    canvas = iface.mapCanvas()
    canvas.setCurrentLayer(layer)

    # Nothing selected: a click makes a new object, as before.
    tool.add_point(QgsPointXY(x0 + 5, y0 + 5))
    answered(tool)
    assert tool.target is None and not tool.preview.isEmpty()
    tool.clear()

    # Both polygons selected: the one nearest the first click is refined.
    layer.selectAll()
    original = {f.id(): QgsGeometry(f.geometry()) for f in layer.getFeatures()}
    near = min(original, key=lambda fid: original[fid].distance(
        QgsGeometry.fromPointXY(QgsPointXY(x0 + 20.3, y0 + 15.3))))
    tool.add_point(QgsPointXY(x0 + 20.3, y0 + 15.3))  # beside the right edge: added
    answered(tool)
    assert tool.target is not None and tool.target.fid == near
    added_click = QgsRectangle(x0 + 19.8, y0 + 14.8, x0 + 20.8, y0 + 15.8)
    added_box = QgsRectangle(x0 + 10, y0 + 20, x0 + 15, y0 + 22)
    tool.set_box(added_box)
    tool.add_point(QgsPointXY(x0 + 12, y0 + 12), positive=False)  # inside: cut out
    answered(tool)
    cut = QgsRectangle(x0 + 11.5, y0 + 11.5, x0 + 12.5, y0 + 12.5)
    expected = (QgsGeometry.fromRect(QgsRectangle(x0 + 10, y0 + 10, x0 + 20, y0 + 20))
                .combine(QgsGeometry.fromRect(added_click))
                .combine(QgsGeometry.fromRect(added_box))
                .difference(QgsGeometry.fromRect(cut)))
    assert tool.preview.symDifference(expected).area() < 1e-6
    assert len(tool.markers) == 2  # the two clicks (the box has its outline)

    # Backspace takes the cut back; a Shift + drag cuts a box out instead (mouse events).
    tool.keyPressEvent(QKeyEvent(QEvent.KeyPress, Qt.Key_Backspace, Qt.NoModifier))
    answered(tool)
    assert tool.preview.symDifference(expected.combine(QgsGeometry.fromRect(cut))).area() < 1e-6
    to_pixel = canvas.getCoordinateTransform()
    a = to_pixel.transform(QgsPointXY(x0 + 11, y0 + 19))
    start = QPoint(int(a.x()), int(a.y()))
    end = start + QPoint(4, 4)  # a drag (over 5 pixels), whatever the canvas's size

    def mouse(kind: Any, pos: QPoint) -> Any:
        return QgsMapMouseEvent(canvas, kind, pos, Qt.LeftButton, Qt.LeftButton,
                                Qt.ShiftModifier)

    tool.canvasPressEvent(mouse(QEvent.MouseButtonPress, start))
    tool.canvasMoveEvent(mouse(QEvent.MouseMove, end))
    tool.canvasReleaseEvent(mouse(QEvent.MouseButtonRelease, end))
    answered(tool)
    hole = QgsRectangle(tool.toMapCoordinates(start), tool.toMapCoordinates(end))
    assert hole.width() > 2
    with_hole = expected.combine(QgsGeometry.fromRect(cut)).difference(
        QgsGeometry.fromRect(hole))
    # The stand-in snaps the box to the 10 cm pixels: within a pixel-wide rim of it.
    assert tool.preview.symDifference(with_hole).area() < QgsGeometry.fromRect(hole).length() * 0.1

    edited = QgsGeometry(tool.preview)
    tool.keyPressEvent(QKeyEvent(QEvent.KeyPress, Qt.Key_Return, Qt.NoModifier))
    assert tool.target is None and tool.parts == [] and tool.preview.isEmpty()
    assert tool.result_layer is None  # no new layer: the result itself was edited
    assert layer.featureCount() == 2 and layer.isEditable()
    feature = layer.getFeature(near)
    assert feature.geometry().symDifference(edited).area() < 1e-6
    assert feature["area"] == pytest.approx(edited.area(), abs=0.01)  # 100 m² scaled
    other = next(fid for fid in original if fid != near)
    assert layer.getFeature(other).geometry().equals(original[other])
    assert layer.undoStack().count() == 1
    layer.undoStack().undo()  # one edit: the geometry and its area come back
    assert layer.getFeature(near).geometry().equals(original[near])
    assert layer.getFeature(near)["area"] == pytest.approx(100.0)
    layer.undoStack().redo()
    assert layer.commitChanges()
    reread = QgsVectorLayer(layer.source(), "reread", "ogr")
    saved = next(f for f in reread.getFeatures() if f.id() == near)
    assert saved.geometry().symDifference(edited).area() < 1e-6


def test_cutting_the_whole_polygon_changes_nothing(tool: Any, iface: Any, clean_project: Any,
                                                   tmp_path: Path) -> None:
    from qgis.core import QgsRectangle

    raster = tool.raster_layer()
    ext = raster.extent()
    x0, y0 = ext.xMinimum(), ext.yMinimum()
    layer = result_gpkg(tmp_path / "small.gpkg", raster.crs().toWkt(),
                        [(x0 + 10, y0 + 10, x0 + 12, y0 + 12)])
    clean_project.addMapLayer(layer)
    iface.mapCanvas().setCurrentLayer(layer)
    layer.selectAll()
    messages: list[str] = []
    tool.failed.connect(messages.append)
    tool.set_box(QgsRectangle(x0 + 9, y0 + 9, x0 + 13, y0 + 13), positive=False)
    answered(tool)
    assert tool.preview.isEmpty()
    assert tool.accept() is None
    assert "cover the whole polygon" in messages[-1]
    assert not layer.isEditable() and layer.undoStack().count() == 0


def test_a_raster_that_is_no_file_is_uploaded_for_the_session(
    tool: Any, iface: Any, clean_project: Any
) -> None:
    """An in-memory copy of the sample (/vsimem: no path the backend can open) is read
    through QGIS for the view, at the canvas's pixel size, and uploaded."""
    from osgeo import gdal
    from qgis.core import QgsGeometry, QgsRasterLayer, QgsRectangle

    mem = "/vsimem/click_neon.tif"
    gdal.FileFromMemBuffer(mem, NEON.read_bytes())
    try:
        layer = QgsRasterLayer(mem, "in memory")
        assert layer.isValid()
        clean_project.removeAllMapLayers()
        clean_project.addMapLayer(layer)
        canvas = iface.mapCanvas()
        canvas.setLayers([layer])
        # Map pixels of 30 cm: coarser than the file's 10 cm.
        size = canvas.mapSettings().outputSize()
        c = layer.extent().center()
        half_w, half_h = size.width() * 0.3 / 2, size.height() * 0.3 / 2
        canvas.setExtent(QgsRectangle(c.x() - half_w, c.y() - half_h,
                                      c.x() + half_w, c.y() + half_h))
        wait_until(lambda: not canvas.isDrawing(), 30, "the canvas")
        tool.raster = None
        assert tool.raster_layer() is layer
        view = canvas.extent()
        drawn = QgsRectangle(c.x() - view.width() / 3, c.y() - view.height() / 3,
                             c.x() + view.width() / 4, c.y() + view.height() / 4)
        tool.set_box(drawn)
        answered(tool)
        assert canvas.mapUnitsPerPixel() > 0.25
        # The export's pixels (the canvas's), not the file's 10 cm.
        assert tool.session["resolution"] == pytest.approx(canvas.mapUnitsPerPixel(), rel=0.02)
        rim = QgsGeometry.fromRect(drawn).length() * tool.session["resolution"]
        assert tool.preview.symDifference(QgsGeometry.fromRect(drawn)).area() < rim
    finally:
        gdal.Unlink(mem)


def test_a_canvas_without_a_crs_prompts_in_the_raster_crs(tool: Any, iface: Any) -> None:
    """A canvas with no CRS (a project without one) sends none: the raster's applies."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsGeometry, QgsRectangle

    iface.mapCanvas().setDestinationCrs(QgsCoordinateReferenceSystem())
    messages: list[str] = []
    tool.failed.connect(messages.append)
    ext = tool.raster_layer().extent()
    drawn = QgsRectangle(ext.xMinimum() + 5, ext.yMinimum() + 5, ext.xMinimum() + 9,
                         ext.yMinimum() + 8)
    tool.set_box(drawn)
    answered(tool)
    assert messages == []
    assert tool.preview.symDifference(QgsGeometry.fromRect(drawn)).area() < 1e-6
