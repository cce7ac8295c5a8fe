"""Refining a polygon with click-to-segment: which polygon, its parts added or removed, and
the edited geometry written back to its layer as one undoable edit.

The polygon is a selected feature of the layer chosen in the Layers panel (a result of a
reasoning or open-vocabulary run, or any polygon layer); with several selected, the one
nearest the first click. Each click or box is one part: SAM's mask for it is added to the
polygon, or cut out of it for a right click (Shift + click, Shift + drag).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsVectorLayer,
    QgsWkbTypes,
)

from .errors import PluginUserError
from .result_style import round_area

#: Name of the edit on the layer's undo stack.
EDIT_COMMAND = "Refine polygon (click to segment)"


class RefineError(PluginUserError):
    """The edited polygon cannot be written back. ``hint`` says what to do."""


@dataclass(eq=False)
class Part:
    """One click or box: its prompt, whether it adds or removes, and SAM's answer.

    Attributes:
        body: The prompt sent for this part alone.
        positive: Added to the polygon (else cut out of it).
        point: The click (canvas CRS) to mark on the map, None for a box.
        geometry: SAM's polygon in the canvas CRS once answered (empty when SAM found
            nothing), None before.
    """

    body: dict[str, Any]
    positive: bool
    point: QgsPointXY | None = None
    geometry: QgsGeometry | None = field(default=None)


class RefineTarget:
    """A feature being refined: its layer, id and geometry in the canvas CRS."""

    def __init__(self, layer: QgsVectorLayer, fid: int,
                 canvas_crs: QgsCoordinateReferenceSystem) -> None:
        self.layer = layer
        self.fid = fid
        self.to_canvas = QgsCoordinateTransform(layer.crs(), canvas_crs, QgsProject.instance())
        feature = layer.getFeature(fid)
        if not feature.isValid() or feature.geometry().isEmpty():
            raise RefineError(f"Feature {fid} of '{layer.name()}' has no polygon to refine.",
                              "Select a feature with a geometry.")
        self.original = QgsGeometry(feature.geometry())
        self.geometry = QgsGeometry(self.original)
        self.geometry.transform(self.to_canvas)

    def compose(self, parts: list[Part]) -> QgsGeometry:
        """The polygon with every answered part added or cut out, in order (canvas CRS)."""
        geom = QgsGeometry(self.geometry)
        for part in parts:
            if part.geometry is None or part.geometry.isEmpty():
                continue
            geom = geom.combine(part.geometry) if part.positive else geom.difference(part.geometry)
        return geom

    def write(self, edited: QgsGeometry) -> None:
        """Replace the feature's geometry (and scale its ``area``) in one edit command.

        The layer is put in editing mode when it is not, and left there: Undo takes the
        edit back, Save Layer Edits keeps it.

        Raises:
            RefineError: The layer cannot be edited or refused the geometry.
        """
        layer = self.layer
        geom = QgsGeometry(edited)
        geom.transform(self.to_canvas, QgsCoordinateTransform.ReverseTransform)
        if QgsWkbTypes.isMultiType(layer.wkbType()):
            geom.convertToMultiType()
        elif geom.isMultipart() and not geom.convertToSingleType():
            raise RefineError(
                f"The edited polygon has several parts; layer '{layer.name()}' holds single "
                "polygons.", "Remove the part that split it (Backspace), or save the layer "
                "as a GeoPackage, which keeps multi-polygons.")
        if not layer.isEditable() and not layer.startEditing():
            raise RefineError(f"Layer '{layer.name()}' cannot be edited.",
                              "Save it as a GeoPackage (Export ▸ Save Features As) and refine "
                              "that copy.")
        layer.beginEditCommand(EDIT_COMMAND)
        ok = layer.changeGeometry(self.fid, geom)
        area_index = layer.fields().indexOf("area")
        if ok and area_index >= 0:
            ok = layer.changeAttributeValue(self.fid, area_index, self._area(geom))
        if not ok:
            layer.destroyEditCommand()
            raise RefineError(f"Layer '{layer.name()}' refused the edited polygon.",
                              "Check that the layer is not read-only.")
        layer.endEditCommand()
        layer.triggerRepaint()

    def _area(self, geom: QgsGeometry) -> float:
        """The ``area`` attribute scaled by how much the polygon grew or shrank, so it keeps
        the units the backend gave it; the layer-CRS area where there was none."""
        old = self.layer.getFeature(self.fid)["area"]
        before = self.original.area()
        if isinstance(old, (int, float)) and before > 0:
            value = float(old) * geom.area() / before
        else:
            value = geom.area()
        return round_area(value, self.layer.crs().isGeographic())


def find_target(layer: Any, point: QgsPointXY,
                canvas_crs: QgsCoordinateReferenceSystem) -> RefineTarget | None:
    """The selected polygon of ``layer`` nearest ``point`` (canvas CRS), or None when the
    layer is no polygon layer or has nothing selected (clicks then make new objects)."""
    if not isinstance(layer, QgsVectorLayer) or layer.selectedFeatureCount() == 0:
        return None
    if layer.geometryType() != QgsWkbTypes.PolygonGeometry:
        return None
    to_layer = QgsCoordinateTransform(canvas_crs, layer.crs(), QgsProject.instance())
    where = QgsGeometry.fromPointXY(to_layer.transform(point))
    candidates = [f for f in layer.getSelectedFeatures() if not f.geometry().isEmpty()]
    if not candidates:
        return None
    nearest = min(candidates, key=lambda f: f.geometry().distance(where))
    return RefineTarget(layer, nearest.id(), canvas_crs)
