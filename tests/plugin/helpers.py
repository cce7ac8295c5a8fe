"""Helpers for the plugin tests (imported after conftest has set up the environment)."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0,
               message: str = "condition") -> None:
    """Process Qt events until ``predicate()`` is true (tasks finish on the GUI thread)."""
    from qgis.core import QgsApplication

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
        QgsApplication.processEvents()
        time.sleep(0.02)


def message_texts(iface: Any) -> list[str]:
    """Title + text of every message bar entry."""
    return [f"{item.title()}: {item_text(item)}" for item in iface.messageBar().items()]


def item_text(item: Any) -> str:
    """A message bar entry's text; for an error, the full text its Details dialog shows."""
    from rs_reasoner_plugin.messages import FULL_TEXT_PROPERTY

    full = item.property(FULL_TEXT_PROPERTY)
    return str(full) if full else item.text()


#: 2 m pixels, top-left corner (500000, 4000000), EPSG:32633.
ORIGIN_X, ORIGIN_Y, PIXEL = 500_000.0, 4_000_000.0, 2.0
#: (row, col, size) of the bright squares in the 300 x 400 scene.
SQUARES = [(50, 60, 40), (150, 250, 30)]


def square_bounds(row: int, col: int, size: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a square in EPSG:32633."""
    return (ORIGIN_X + col * PIXEL, ORIGIN_Y - (row + size) * PIXEL,
            ORIGIN_X + (col + size) * PIXEL, ORIGIN_Y - row * PIXEL)


def write_squares_tif(path: Path, squares: list[tuple[int, int, int]] = SQUARES,
                      height: int = 300, width: int = 400, epsg: int | None = 32633,
                      georeferenced: bool = True) -> Path:
    """A 3-band uint8 GeoTIFF: dark background (20) with bright (230) squares."""
    import numpy as np
    from osgeo import gdal, osr

    data = np.full((3, height, width), 20, np.uint8)
    for r, c, s in squares:
        data[:, r:r + s, c:c + s] = 230
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 3, gdal.GDT_Byte,
                                              ["TILED=YES"])
    if georeferenced:
        ds.SetGeoTransform((ORIGIN_X, PIXEL, 0.0, ORIGIN_Y, 0.0, -PIXEL))
        if epsg:
            srs = osr.SpatialReference()
            srs.ImportFromEPSG(epsg)
            ds.SetProjection(srs.ExportToWkt())
    for i in range(3):
        band = ds.GetRasterBand(i + 1)
        band.WriteArray(data[i])
        band.SetColorInterpretation(gdal.GCI_RedBand + i)
    ds.FlushCache()
    ds = None
    return path


class IfaceStandIn:
    """The parts of QgisInterface the plugin uses, made of real QGIS objects: a
    QMainWindow with a QgsMapCanvas (bound to QgsProject.instance()'s layer tree) and a
    QgsMessageBar."""

    def __init__(self) -> None:
        from qgis.core import QgsProject
        from qgis.gui import QgsLayerTreeMapCanvasBridge, QgsMapCanvas, QgsMessageBar
        from qgis.PyQt.QtWidgets import QMainWindow, QMenu, QVBoxLayout, QWidget

        self._main = QMainWindow()
        self._main.resize(1200, 800)
        central = QWidget(self._main)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        self._bar = QgsMessageBar(central)
        self._canvas = QgsMapCanvas(central)
        self._canvas.setObjectName("theMapCanvas")
        layout.addWidget(self._bar)
        layout.addWidget(self._canvas, 1)
        self._main.setCentralWidget(central)
        self._bridge = QgsLayerTreeMapCanvasBridge(
            QgsProject.instance().layerTreeRoot(), self._canvas)
        self._plugin_menu = QMenu("&Plugins", self._main)
        self._main.menuBar().addMenu(self._plugin_menu)
        self.menus: dict[str, QMenu] = {}
        self._active = None

    def mainWindow(self):  # noqa: N802, ANN201
        return self._main

    def mapCanvas(self):  # noqa: N802, ANN201
        return self._canvas

    def messageBar(self):  # noqa: N802, ANN201
        return self._bar

    def pluginMenu(self):  # noqa: N802, ANN201
        return self._plugin_menu

    def addToolBar(self, name: str):  # noqa: N802, ANN201
        return self._main.addToolBar(name)

    def addPluginToMenu(self, name: str, action) -> None:  # noqa: N802, ANN001
        from qgis.PyQt.QtWidgets import QMenu

        menu = self.menus.get(name)
        if menu is None:
            menu = self.menus[name] = QMenu(name, self._plugin_menu)
            self._plugin_menu.addMenu(menu)
        menu.addAction(action)

    def removePluginMenu(self, name: str, action) -> None:  # noqa: N802, ANN001
        menu = self.menus.get(name)
        if menu is not None:
            menu.removeAction(action)
            if not menu.actions():
                self._plugin_menu.removeAction(menu.menuAction())
                del self.menus[name]

    def addDockWidget(self, area, dock) -> None:  # noqa: N802, ANN001
        self._main.addDockWidget(area, dock)

    def removeDockWidget(self, dock) -> None:  # noqa: N802, ANN001
        self._main.removeDockWidget(dock)

    def activeLayer(self):  # noqa: N802, ANN201
        return self._active

    def setActiveLayer(self, layer) -> bool:  # noqa: N802, ANN001
        self._active = layer
        return True


def unpacked_plugin(dest: Path) -> Path:
    """`make plugin`'s zip, unpacked into ``dest`` (a QGIS plugins folder)."""
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "build_plugin.py"
    spec = importlib.util.spec_from_file_location("build_plugin", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    zip_path = mod.build(dest.parent / "dist")
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        assert all(n.startswith("rs_reasoner_plugin/") for n in names), names
        assert "rs_reasoner_plugin/metadata.txt" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        zf.extractall(dest)
    return dest


#: Parcels on the NEON sample: one square of PARCEL_PX pixels in every other cell of a
#: TILE_PX grid (so each parcel has tiles of its own and can be held out for validation).
TILE_PX, PARCEL_PX = 64, 32


def neon_parcels(raster_path: Path) -> list[tuple[Any, str]]:
    """(QgsRectangle in the raster CRS, class) of squares labelled from the real pixels:
    'bright' when the square's mean brightness is above the median of all squares, else
    'dark' (two classes of about the same size)."""
    import numpy as np
    from osgeo import gdal
    from qgis.core import QgsRectangle

    ds = gdal.Open(str(raster_path))
    x0, px, _, y0, _, py = ds.GetGeoTransform()
    data = ds.ReadAsArray().astype(float).mean(axis=0)
    cells = ds.RasterYSize // TILE_PX, ds.RasterXSize // TILE_PX
    squares = []
    for r in range(cells[0]):
        for c in range(cells[1]):
            if (r + c) % 2:
                continue
            row = r * TILE_PX + (TILE_PX - PARCEL_PX) // 2
            col = c * TILE_PX + (TILE_PX - PARCEL_PX) // 2
            mean = data[row:row + PARCEL_PX, col:col + PARCEL_PX].mean()
            rect = QgsRectangle(x0 + col * px, y0 + (row + PARCEL_PX) * py,
                                x0 + (col + PARCEL_PX) * px, y0 + row * py)
            squares.append((rect, mean))
    median = float(np.median([m for _, m in squares]))
    return [(rect, "bright" if m > median else "dark") for rect, m in squares]


def parcels_memory_layer(raster_path: Path, name: str = "parcels",
                         crs: str = "EPSG:32617") -> Any:
    """A memory polygon layer with fields ``kind`` (class) and ``note``."""
    from qgis.core import QgsFeature, QgsField, QgsGeometry, QgsVectorLayer
    from qgis.PyQt.QtCore import QVariant

    layer = QgsVectorLayer(f"Polygon?crs={crs}", name, "memory")
    provider = layer.dataProvider()
    provider.addAttributes([QgsField("kind", QVariant.String), QgsField("note", QVariant.Int)])
    layer.updateFields()
    feats = []
    for i, (rect, kind) in enumerate(neon_parcels(raster_path)):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromRect(rect))
        f.setAttributes([kind, i])
        feats.append(f)
    provider.addFeatures(feats)
    layer.updateExtents()
    return layer


def write_vector(layer: Any, path: Path, table: str, driver: str = "GPKG") -> Path:
    """Write (or add, for a GeoPackage that exists) ``layer`` as ``table`` of ``path``."""
    from qgis.core import QgsCoordinateTransformContext, QgsVectorFileWriter

    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = driver
    options.layerName = table
    if path.exists() and driver == "GPKG":
        options.actionOnExistingFile = QgsVectorFileWriter.CreateOrOverwriteLayer
    err = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(path), QgsCoordinateTransformContext(), options)
    assert err[0] == QgsVectorFileWriter.NoError, err
    return path


def reprojected(layer: Any, crs: str) -> Any:
    """A memory copy of ``layer`` (fields and features) in ``crs``."""
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsFeature,
        QgsProject,
        QgsVectorLayer,
        QgsWkbTypes,
    )

    target = QgsCoordinateReferenceSystem(crs)
    out = QgsVectorLayer(f"{QgsWkbTypes.displayString(layer.wkbType())}?crs={crs}",
                         layer.name(), "memory")
    out.dataProvider().addAttributes(layer.fields().toList())
    out.updateFields()
    tr = QgsCoordinateTransform(layer.crs(), target, QgsProject.instance())
    feats = []
    for f in layer.getFeatures():
        g = f.geometry()
        g.transform(tr)
        nf = QgsFeature(out.fields())
        nf.setGeometry(g)
        nf.setAttributes(f.attributes())
        feats.append(nf)
    out.dataProvider().addFeatures(feats)
    out.updateExtents()
    return out
