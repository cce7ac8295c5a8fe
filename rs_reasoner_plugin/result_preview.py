"""A result shown on the map before it joins the project: its polygons drawn over the
canvas until the user accepts (the layer is added) or discards it (its GeoPackage is
deleted)."""

from __future__ import annotations

import contextlib
import os

from qgis.core import QgsGeometry, QgsVectorLayer, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsRubberBand
from qgis.PyQt.QtGui import QColor

from .results import WrittenResult, load_class_layers, load_result_layer

#: Fill of the previewed polygons (the outline is opaque).
PREVIEW_COLOUR = QColor(0, 255, 255)


class ResultPreview:
    """One result waiting for Accept or Discard.

    Args:
        written: The GeoPackage the run wrote.
        name: The layer name it gets when accepted.
        canvas: Where to draw it (None: nothing drawn).
        per_class: Accepting adds one layer per class.
    """

    def __init__(self, written: WrittenResult, name: str, canvas: QgsMapCanvas | None,
                 per_class: bool = False) -> None:
        self.written = written
        self.name = name
        self.canvas = canvas
        self.per_class = per_class
        self.band: QgsRubberBand | None = None
        self._draw()

    def _draw(self) -> None:
        if self.canvas is None:
            return
        layer = load_result_layer(self.written, self.name)
        band = QgsRubberBand(self.canvas, QgsWkbTypes.PolygonGeometry)
        fill = QColor(PREVIEW_COLOUR)
        fill.setAlpha(70)
        band.setFillColor(fill)
        band.setStrokeColor(PREVIEW_COLOUR)
        band.setWidth(1)
        geoms = [f.geometry() for f in layer.getFeatures() if f.hasGeometry()]
        if geoms:
            band.setToGeometry(QgsGeometry.collectGeometry(geoms), layer)
        band.show()
        self.band = band

    def polygon_count(self) -> int:
        """Polygons drawn (parts of the preview's geometry)."""
        if self.band is None:
            return 0
        geom = self.band.asGeometry()
        return 0 if geom.isEmpty() else geom.constGet().numGeometries()

    def hide(self) -> None:
        """Remove the drawing from the map (the file stays)."""
        if self.band is not None and self.canvas is not None:
            with contextlib.suppress(RuntimeError):
                self.canvas.scene().removeItem(self.band)
        self.band = None

    def accept(self) -> list[QgsVectorLayer]:
        """The result's layer(s), ready to add to the project; the preview goes."""
        self.hide()
        if self.per_class and len(self.written.labels) > 1:
            return load_class_layers(self.written, self.name)
        return [load_result_layer(self.written, self.name)]

    def discard(self) -> None:
        """Remove the preview and delete the GeoPackage (nothing else uses it)."""
        self.hide()
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                os.remove(self.written.path + suffix)
