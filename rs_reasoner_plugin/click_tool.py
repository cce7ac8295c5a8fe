"""Click-to-segment: a map tool that prompts SAM with points and boxes on the canvas.

Left click: a point inside the object; right click (or Shift + click): a point outside
it; drag: a box. The first prompt opens a backend session for the raster and the current
view (SAM embeds that image once); every further click is only a mask decode, and its
polygon is previewed on the canvas. Enter (or :meth:`accept`) adds it to the result
layer; Esc discards; Backspace removes the last click. Panning out of the embedded view,
or zooming in more than twice, makes the next click open a new session for the new view.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

from osgeo import ogr
from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsField,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand, QgsVertexMarker
from qgis.PyQt.QtCore import Qt, QVariant, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent

from .api_client import BackendError
from .backend_process import BackendProcess
from .settings import PluginSettings
from .tasks import backend_config
from .tool_api import BackendCallTask, ToolClient

#: A press and release further apart than this (screen pixels) is a box, not a click.
DRAG_PIXELS = 5
RESULT_LAYER_NAME = "Clicked objects"
#: Zoomed in more than this many times since the session's view: embed the new view (SAM
#: then sees finer pixels).
ZOOM_IN_FACTOR = 2.0


def _crs_text(crs: Any) -> str:
    return crs.authid() or crs.toWkt()


def geometry_from_geojson(geometry: dict[str, Any]) -> QgsGeometry:
    """A GeoJSON geometry as a QgsGeometry (through OGR, which QGIS ships)."""
    ogr_geom = ogr.CreateGeometryFromJson(json.dumps(geometry))
    return QgsGeometry.fromWkt(ogr_geom.ExportToWkt()) if ogr_geom else QgsGeometry()


class ClickSegmentTool(QgsMapTool):
    """The map tool. ``previewChanged`` fires after each answer (geometry may be empty),
    ``failed`` with an error text, ``accepted`` with the feature added."""

    previewChanged = pyqtSignal(object)  # noqa: N815 - Qt signal naming
    failed = pyqtSignal(str)
    accepted = pyqtSignal(object)

    def __init__(self, canvas: QgsMapCanvas, backend_process: BackendProcess,
                 raster: QgsRasterLayer | None = None) -> None:
        super().__init__(canvas)
        self.canvas_ = canvas
        self.backend_process = backend_process
        self.raster = raster
        self.points: list[tuple[QgsPointXY, bool]] = []
        self.box: QgsRectangle | None = None
        self.preview = QgsGeometry()
        self.preview_info: dict[str, Any] = {}
        self.session: dict[str, Any] | None = None
        self._session_key: tuple[tuple[str, str], QgsRectangle] | None = None
        self.task: BackendCallTask | None = None
        self._pending = False
        self._press: Any = None
        self.latencies_ms: list[float] = []
        self.result_layer: QgsVectorLayer | None = None
        self.band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self.band.setColor(QColor(255, 200, 0, 90))
        self.band.setStrokeColor(QColor(255, 140, 0))
        self.band.setWidth(2)
        self.box_band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self.box_band.setColor(QColor(0, 0, 0, 0))
        self.box_band.setStrokeColor(QColor(30, 120, 255))
        self.markers: list[QgsVertexMarker] = []
        self.setCursor(Qt.CrossCursor)

    # -- which raster ----------------------------------------------------------------------

    def raster_layer(self) -> QgsRasterLayer | None:
        """The chosen raster, else the topmost visible local raster of the project."""
        if self.raster is not None:
            return self.raster
        for layer in self.canvas_.layers():
            if isinstance(layer, QgsRasterLayer) and os.path.isfile(layer.source()):
                return layer
        return None

    # -- mouse and keys --------------------------------------------------------------------

    def canvasPressEvent(self, e: QgsMapMouseEvent) -> None:  # noqa: N802 - QGIS API
        self._press = e.pos()

    def canvasMoveEvent(self, e: QgsMapMouseEvent) -> None:  # noqa: N802 - QGIS API
        if self._press is not None and self._dragged(self._press, e.pos()):
            start = self.toMapCoordinates(self._press)
            self.box_band.setToGeometry(QgsGeometry.fromRect(QgsRectangle(start, e.mapPoint())))

    def canvasReleaseEvent(self, e: QgsMapMouseEvent) -> None:  # noqa: N802 - QGIS API
        press, self._press = self._press, None
        if press is not None and self._dragged(press, e.pos()):
            self.set_box(QgsRectangle(self.toMapCoordinates(press), e.mapPoint()))
            return
        negative = e.button() == Qt.RightButton or bool(e.modifiers() & Qt.ShiftModifier)
        self.add_point(e.mapPoint(), positive=not negative)

    @staticmethod
    def _dragged(press: Any, pos: Any) -> bool:
        return (abs(pos.x() - press.x()) + abs(pos.y() - press.y())) > DRAG_PIXELS

    def keyPressEvent(self, e: QKeyEvent) -> None:  # noqa: N802 - QGIS API
        if e.key() in (Qt.Key_Return, Qt.Key_Enter):
            self.accept()
        elif e.key() == Qt.Key_Escape:
            self.clear()
        elif e.key() == Qt.Key_Backspace and self.points:
            self.points.pop()
            self._redraw_markers()
            self._request()
        else:
            return
        e.accept()

    # -- prompts ---------------------------------------------------------------------------

    def add_point(self, point: QgsPointXY, positive: bool = True) -> None:
        """A click in canvas coordinates (inside the object when ``positive``)."""
        self.points.append((QgsPointXY(point), positive))
        self._redraw_markers()
        self._request()

    def set_box(self, rect: QgsRectangle) -> None:
        """A box in canvas coordinates (replaces the previous one)."""
        self.box = QgsRectangle(rect)
        self.box.normalize()
        self.box_band.setToGeometry(QgsGeometry.fromRect(self.box))
        self._request()

    def _redraw_markers(self) -> None:
        for m in self.markers:
            self.canvas_.scene().removeItem(m)
        self.markers = []
        for point, positive in self.points:
            m = QgsVertexMarker(self.canvas_)
            m.setCenter(point)
            m.setIconType(QgsVertexMarker.ICON_CROSS if positive else QgsVertexMarker.ICON_X)
            m.setColor(QColor(0, 170, 0) if positive else QColor(220, 0, 0))
            m.setPenWidth(3)
            self.markers.append(m)

    def _body(self) -> dict[str, Any] | None:
        if not any(p for _, p in self.points) and self.box is None:
            return None
        body: dict[str, Any] = {"points": [{"x": p.x(), "y": p.y(), "positive": pos}
                                           for p, pos in self.points]}
        if self.box is not None:
            b = self.box
            body["box"] = [b.xMinimum(), b.yMinimum(), b.xMaximum(), b.yMaximum()]
        return body

    def _view(self, layer: QgsRasterLayer) -> tuple[tuple[str, str], QgsRectangle]:
        crs = self.canvas_.mapSettings().destinationCrs()
        return (layer.source(), _crs_text(crs)), QgsRectangle(self.canvas_.extent())

    def _session_fits(self, key: tuple[str, str], view: QgsRectangle) -> bool:
        """The open session serves this view: same raster and CRS, the view inside the
        embedded extent and not zoomed in more than twice (else a finer embedding pays)."""
        if self.session is None or self._session_key is None:
            return False
        session_key, embedded = self._session_key
        return (session_key == key and embedded.contains(view)
                and view.width() * ZOOM_IN_FACTOR >= embedded.width())

    def _request(self) -> None:
        """Send the clicks so far (after the answer in flight, if any)."""
        body = self._body()
        if body is None:
            self._show(QgsGeometry(), {})
            return
        if self.task is not None:
            self._pending = True  # only the latest state matters
            return
        layer = self.raster_layer()
        if layer is None:
            self.failed.emit("Click-to-segment needs a raster file in the project (a local "
                             "GeoTIFF or other GDAL file).")
            return
        key, ext = self._view(layer)
        session = self.session if self._session_fits(key, ext) else None
        old = self.session if session is None else None
        crs = self.canvas_.mapSettings().destinationCrs()
        open_body = {"raster": layer.source(), "extent": {
            "xmin": ext.xMinimum(), "ymin": ext.yMinimum(), "xmax": ext.xMaximum(),
            "ymax": ext.yMaximum(), "crs": _crs_text(crs)}}

        def work(client: ToolClient, task: BackendCallTask) -> dict[str, Any]:
            nonlocal session
            if session is None:
                if old is not None:
                    with contextlib.suppress(BackendError):  # it may be gone already
                        client.close_session(old["id"])
                session = client.open_session(open_body)
            start = time.perf_counter()
            answer = client.prompt(session["id"], body)
            answer["latency_ms"] = (time.perf_counter() - start) * 1000
            answer["session"] = session
            return answer

        settings = PluginSettings.load()
        task = BackendCallTask("RS Reasoner: click-to-segment",
                               backend_config(settings, self.backend_process), work)
        task.done.connect(lambda result, error: self._answered((key, ext), result, error))
        self.task = task
        QgsApplication.taskManager().addTask(task)

    def _answered(self, key: tuple[tuple[str, str], QgsRectangle], answer: Any,
                  error: Any) -> None:
        self.task = None
        if error is not None:
            if getattr(error, "status", None) == 404:
                self.session = self._session_key = None  # dropped by the backend: reopen
            self.failed.emit(str(error))
        else:
            if answer["session"] is not self.session:
                self.session, self._session_key = answer["session"], key
            self.latencies_ms.append(answer["latency_ms"])
            features = answer.get("features") or []
            geom = geometry_from_geojson(features[0]["geometry"]) if features else QgsGeometry()
            info = dict(features[0]["properties"]) if features else {}
            info["latency_ms"] = round(answer["latency_ms"], 1)
            info["decode_ms"] = answer.get("decode_ms")
            self._show(geom, info)
        if self._pending:
            self._pending = False
            self._request()

    def _show(self, geom: QgsGeometry, info: dict[str, Any]) -> None:
        self.preview = geom
        self.preview_info = info
        if geom.isEmpty():
            self.band.reset(QgsWkbTypes.PolygonGeometry)
        else:
            self.band.setToGeometry(geom)
        self.previewChanged.emit(geom)

    # -- accept / discard ------------------------------------------------------------------

    def accept(self) -> QgsFeature | None:
        """Add the previewed polygon to the result layer; start over with no clicks."""
        if self.preview.isEmpty():
            return None
        layer = self._result_layer()
        feature = QgsFeature(layer.fields())
        geom = QgsGeometry(self.preview)
        geom.convertToMultiType()
        feature.setGeometry(geom)
        feature["score"] = float(self.preview_info.get("score") or 0.0)
        # The backend's area: in the raster's units (a geographic canvas has degrees).
        feature["area"] = float(self.preview_info.get("area") or 0.0)
        layer.dataProvider().addFeatures([feature])
        layer.updateExtents()
        layer.triggerRepaint()
        self.clear()
        self.accepted.emit(feature)
        return feature

    def _result_layer(self) -> QgsVectorLayer:
        project = QgsProject.instance()
        if self.result_layer is not None and project.mapLayer(self.result_layer.id()):
            return self.result_layer
        crs = self.canvas_.mapSettings().destinationCrs()
        layer = QgsVectorLayer(f"MultiPolygon?crs={_crs_text(crs)}", RESULT_LAYER_NAME,
                               "memory")
        layer.dataProvider().addAttributes([QgsField("score", QVariant.Double),
                                            QgsField("area", QVariant.Double)])
        layer.updateFields()
        project.addMapLayer(layer)
        self.result_layer = layer
        return layer

    def clear(self) -> None:
        """Forget the clicks, box and preview (the session stays for this view)."""
        self.points = []
        self.box = None
        self._pending = False
        self._redraw_markers()
        self.box_band.reset(QgsWkbTypes.PolygonGeometry)
        self._show(QgsGeometry(), {})

    def deactivate(self) -> None:
        self.clear()
        super().deactivate()
