"""The area of interest outlined on the map canvas (a drawn rectangle, selected polygons,
the area of the last run), so the user sees what will be or was segmented."""

from __future__ import annotations

import contextlib

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsProject,
    QgsWkbTypes,
)
from qgis.gui import QgsMapCanvas, QgsRubberBand
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor

#: Outline colour (the QGIS selection yellow reads on imagery and on white).
OUTLINE_COLOUR = QColor(255, 200, 0)


class AreaOutline:
    """A dashed polygon outline on ``canvas``; one at a time."""

    def __init__(self, canvas: QgsMapCanvas | None) -> None:
        self.canvas = canvas
        self.band: QgsRubberBand | None = None
        self.geometry: QgsGeometry | None = None  # in the canvas CRS

    def show(self, geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> None:
        """Outline ``geometry`` (in ``crs``), replacing the previous outline."""
        self.clear()
        if self.canvas is None or geometry is None or geometry.isEmpty():
            return
        geom = QgsGeometry(geometry)
        dest = self.canvas.mapSettings().destinationCrs()
        if crs.isValid() and dest.isValid() and crs != dest:
            geom.transform(QgsCoordinateTransform(crs, dest, QgsProject.instance()))
        band = QgsRubberBand(self.canvas, QgsWkbTypes.PolygonGeometry)
        band.setStrokeColor(OUTLINE_COLOUR)
        band.setFillColor(QColor(0, 0, 0, 0))
        band.setWidth(2)
        band.setLineStyle(Qt.DashLine)
        band.setToGeometry(geom, None)
        band.show()
        self.band = band
        self.geometry = geom

    def clear(self) -> None:
        """Remove the outline."""
        if self.band is not None and self.canvas is not None:
            with contextlib.suppress(RuntimeError):  # the canvas is gone
                self.canvas.scene().removeItem(self.band)
        self.band = None
        self.geometry = None
