"""Click-to-segment in QGIS against a real backend whose SAM is the box-shaped stand-in
(tests.support.interactive:rect): boxes and clicks drawn on the canvas come back as the
previewed polygon where they were drawn, one session per view, Enter keeps the polygon in
the result layer, Esc discards."""

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
    assert "needs a raster file" in messages[-1]
