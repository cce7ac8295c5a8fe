"""Click-to-segment: a map tool that prompts SAM with points and boxes on the canvas.

Left click: a point inside the object; right click (or Shift + click): a point outside
it; drag: a box. The first prompt opens a backend session for the raster and the current
view (SAM embeds that image once); every further click is only a mask decode, and its
polygon is previewed on the canvas. Enter (or :meth:`accept`) adds it to the result
layer; Esc discards; Backspace removes the last click. Panning out of the embedded view,
or zooming in more than twice, makes the next click open a new session for the new view.

With a polygon selected in the layer chosen in the Layers panel (a reasoning or
open-vocabulary result, say), the same clicks refine it instead (:mod:`.click_refine`):
each click or box adds SAM's mask for it, a right click (Shift + click or drag) cuts it out,
and Enter writes the polygon back as one undoable edit.

Rasters the backend cannot open by path (WMS, XYZ, in-memory...) are read through QGIS for
the view and uploaded once per session, as the dock does.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from osgeo import ogr
from qgis.core import (
    QgsApplication,
    QgsCoordinateTransform,
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
from .click_refine import Part, RefineError, RefineTarget, find_target
from .raster_export import (
    ExportError,
    ExportJob,
    local_file_path,
    native_resolution,
    prepare_export,
)
from .settings import PluginSettings
from .tasks import backend_config, export_and_upload
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
        self.target: RefineTarget | None = None
        self.parts: list[Part] = []
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
        """The chosen raster, else the topmost visible raster of the project."""
        if self.raster is not None:
            return self.raster
        for layer in self.canvas_.layers():
            if isinstance(layer, QgsRasterLayer) and layer.isValid():
                return layer
        return None

    def refine(self, layer: QgsVectorLayer, fid: int) -> None:
        """Refine feature ``fid`` of ``layer`` with the next clicks (instead of the
        selected polygon the first click would pick)."""
        self.clear()
        self.target = RefineTarget(layer, fid, self.canvas_.mapSettings().destinationCrs())
        self._show(QgsGeometry(self.target.geometry), {})

    # -- mouse and keys --------------------------------------------------------------------

    def canvasPressEvent(self, e: QgsMapMouseEvent) -> None:  # noqa: N802 - QGIS API
        self._press = e.pos()

    def canvasMoveEvent(self, e: QgsMapMouseEvent) -> None:  # noqa: N802 - QGIS API
        if self._press is not None and self._dragged(self._press, e.pos()):
            start = self.toMapCoordinates(self._press)
            self.box_band.setToGeometry(QgsGeometry.fromRect(QgsRectangle(start, e.mapPoint())))

    def canvasReleaseEvent(self, e: QgsMapMouseEvent) -> None:  # noqa: N802 - QGIS API
        press, self._press = self._press, None
        negative = e.button() == Qt.RightButton or bool(e.modifiers() & Qt.ShiftModifier)
        if press is not None and self._dragged(press, e.pos()):
            self.set_box(QgsRectangle(self.toMapCoordinates(press), e.mapPoint()),
                         positive=not negative)
            return
        self.add_point(e.mapPoint(), positive=not negative)

    @staticmethod
    def _dragged(press: Any, pos: Any) -> bool:
        return (abs(pos.x() - press.x()) + abs(pos.y() - press.y())) > DRAG_PIXELS

    def keyPressEvent(self, e: QKeyEvent) -> None:  # noqa: N802 - QGIS API
        if e.key() in (Qt.Key_Return, Qt.Key_Enter):
            self.accept()
        elif e.key() == Qt.Key_Escape:
            self.clear()
        elif e.key() == Qt.Key_Backspace and self.target is not None and self.parts:
            self.parts.pop()
            self._redraw_markers()
            self._request()
        elif e.key() == Qt.Key_Backspace and self.points:
            self.points.pop()
            self._redraw_markers()
            self._request()
        else:
            return
        e.accept()

    # -- prompts ---------------------------------------------------------------------------

    def add_point(self, point: QgsPointXY, positive: bool = True) -> None:
        """A click in canvas coordinates: inside the object when ``positive``; when
        refining, a part to add (``positive``) or to cut out."""
        if self._refining(point):
            body = {"points": [{"x": point.x(), "y": point.y(), "positive": True}]}
            self._add_part(Part(body, positive, QgsPointXY(point)))
            return
        self.points.append((QgsPointXY(point), positive))
        self._redraw_markers()
        self._request()

    def set_box(self, rect: QgsRectangle, positive: bool = True) -> None:
        """A box in canvas coordinates (replaces the previous one); when refining, a part
        to add (``positive``) or to cut out."""
        box = QgsRectangle(rect)
        box.normalize()
        self.box_band.setToGeometry(QgsGeometry.fromRect(box))
        if self._refining(box.center()):
            body = {"box": [box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()]}
            self._add_part(Part(body, positive))
            return
        self.box = box
        self._request()

    def _refining(self, point: QgsPointXY) -> bool:
        """Whether this gesture refines a polygon: one is being refined already, or no
        object is under way and the current layer has a selected polygon."""
        if self.target is None and not self.points and self.box is None:
            try:
                self.target = find_target(self.canvas_.currentLayer(), point,
                                          self.canvas_.mapSettings().destinationCrs())
            except RefineError as exc:
                self.failed.emit(str(exc))
        return self.target is not None

    def _add_part(self, part: Part) -> None:
        self.parts.append(part)
        self._redraw_markers()
        self._request()

    def _redraw_markers(self) -> None:
        for m in self.markers:
            self.canvas_.scene().removeItem(m)
        self.markers = []
        clicks = self.points if self.target is None else [
            (p.point, p.positive) for p in self.parts if p.point is not None]
        for point, positive in clicks:
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
        return (layer.id() or layer.source(), _crs_text(crs)), QgsRectangle(self.canvas_.extent())

    def _session_fits(self, key: tuple[str, str], view: QgsRectangle) -> bool:
        """The open session serves this view: same raster and CRS, the view inside the
        embedded extent and not zoomed in more than twice (else a finer embedding pays)."""
        if self.session is None or self._session_key is None:
            return False
        session_key, embedded = self._session_key
        return (session_key == key and embedded.contains(view)
                and view.width() * ZOOM_IN_FACTOR >= embedded.width())

    def _export(self, layer: QgsRasterLayer, view: QgsRectangle) -> ExportJob:
        """The view of a layer the backend cannot open, to read through QGIS and upload, at
        the canvas's pixel size (never finer than the layer's own).

        Raises:
            ExportError: The view misses the layer, or it has no resolution.
        """
        to_layer = QgsCoordinateTransform(self.canvas_.mapSettings().destinationCrs(),
                                          layer.crs(), QgsProject.instance())
        area = to_layer.transformBoundingBox(view)
        pixels = max(self.canvas_.mapSettings().outputSize().width(), 1)
        resolution = area.width() / pixels
        native = native_resolution(layer)
        if native is not None:
            resolution = max(resolution, native)
        return prepare_export(layer, area, resolution)

    def _next_prompt(self) -> tuple[dict[str, Any] | None, Part | None]:
        """The prompt to send next: the first unanswered part when refining, else every
        click so far; None when there is nothing to ask."""
        if self.target is not None:
            part = next((p for p in self.parts if p.geometry is None), None)
            return (part.body if part is not None else None), part
        return self._body(), None

    def _request(self) -> None:
        """Send the next prompt (after the answer in flight, if any)."""
        if self.task is not None:
            self._pending = True  # only the latest state matters
            return
        body, part = self._next_prompt()
        if body is None:
            self._show_state()
            return
        layer = self.raster_layer()
        if layer is None:
            self._drop(part)
            self.failed.emit("Click-to-segment needs a raster layer in the project.")
            return
        key, ext = self._view(layer)
        session = self.session if self._session_fits(key, ext) else None
        old = self.session if session is None else None
        crs = self.canvas_.mapSettings().destinationCrs()
        open_body: dict[str, Any] = {"extent": {
            "xmin": ext.xMinimum(), "ymin": ext.yMinimum(), "xmax": ext.xMaximum(),
            # A canvas without a CRS: the raster's own (the backend's default).
            "ymax": ext.yMaximum(), "crs": _crs_text(crs) if crs.isValid() else None}}
        export = None
        if session is None:
            path = None if PluginSettings.load().always_upload else local_file_path(layer)
            if path is not None:
                open_body["raster"] = path
            else:
                try:
                    export = self._export(layer, ext)
                except ExportError as exc:
                    self._drop(part)
                    self.failed.emit(str(exc))
                    return

        def work(client: ToolClient, task: BackendCallTask) -> dict[str, Any]:
            nonlocal session
            if session is None:
                if old is not None:
                    with contextlib.suppress(BackendError):  # it may be gone already
                        client.close_session(old["id"])
                if export is not None:
                    open_body["upload_id"] = export_and_upload(
                        client, export, None, lambda: None, lambda _stage: None)
                session = client.open_session(open_body)
            start = time.perf_counter()
            answer = client.prompt(session["id"], body)
            answer["latency_ms"] = (time.perf_counter() - start) * 1000
            answer["session"] = session
            return answer

        settings = PluginSettings.load()
        task = BackendCallTask("RS Reasoner: click-to-segment",
                               backend_config(settings, self.backend_process), work)
        task.done.connect(
            lambda result, error: self._answered((key, ext), part, result, error))
        self.task = task
        QgsApplication.taskManager().addTask(task)

    def _drop(self, part: Part | None) -> None:
        """Forget a part that could not be answered (else it would be asked again)."""
        if part is not None and any(p is part for p in self.parts):
            self.parts.remove(part)
            self._redraw_markers()

    def _answered(self, key: tuple[tuple[str, str], QgsRectangle], part: Part | None,
                  answer: Any, error: Any) -> None:
        self.task = None
        if error is not None:
            if getattr(error, "status", None) == 404:
                self.session = self._session_key = None  # dropped by the backend: reopen
            self._drop(part)
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
            if part is None:
                self._show(geom, info)
            elif any(p is part for p in self.parts):  # not taken back meanwhile
                part.geometry = geom
                self.preview_info = info
        refining = self.target is not None and any(p.geometry is None for p in self.parts)
        if self._pending or refining:
            self._pending = False
            self._request()
        elif self.target is not None:
            self._show_state()

    def _show_state(self) -> None:
        """Preview what Enter would keep: the refined polygon, or nothing."""
        if self.target is not None:
            self._show(self.target.compose(self.parts), self.preview_info)
        else:
            self._show(QgsGeometry(), {})

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
        """Add the previewed polygon to the result layer, or write the refined polygon
        back to its layer; start over with no clicks."""
        if self.target is not None:
            return self._accept_refined()
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

    def _accept_refined(self) -> QgsFeature | None:
        target = self.target
        assert target is not None
        if not any(p.geometry is not None and not p.geometry.isEmpty() for p in self.parts):
            return None  # nothing changed yet
        if self.preview.isEmpty():
            self.failed.emit("The parts cut out cover the whole polygon: nothing was changed. "
                             "Delete the feature instead, or take a part back (Backspace).")
            return None
        try:
            target.write(self.preview)
        except RefineError as exc:
            self.failed.emit(str(exc))
            return None
        feature = target.layer.getFeature(target.fid)
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
        """Forget the clicks, box, parts, polygon refined and preview (the session stays
        for this view)."""
        self.points = []
        self.box = None
        self.parts = []
        self.target = None
        self._pending = False
        self._redraw_markers()
        self.box_band.reset(QgsWkbTypes.PolygonGeometry)
        self._show(QgsGeometry(), {})

    def deactivate(self) -> None:
        self.clear()
        super().deactivate()
