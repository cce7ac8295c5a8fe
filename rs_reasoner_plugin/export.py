"""Export a result layer as an ESRI Shapefile (with .prj), GeoPackage or GeoJSON.

GeoJSON follows RFC 7946: coordinates in WGS 84 (longitude, latitude) and no ``crs`` member,
so every reader places it. A Shapefile's 64-bit integer fields (the GeoPackage's ``fid``)
are written as integers: the format stores them as 20-digit numbers that readers take for
reals."""

from __future__ import annotations

import os

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsField,
    QgsProject,
    QgsVectorFileWriter,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant

#: Format name shown to users → (OGR driver, extension).
FORMATS: dict[str, tuple[str, str]] = {
    "ESRI Shapefile": ("ESRI Shapefile", ".shp"),
    "GeoPackage": ("GPKG", ".gpkg"),
    "GeoJSON": ("GeoJSON", ".geojson"),
}
#: File dialog filter.
FILE_FILTER = ";;".join(f"{name} (*{ext})" for name, (_, ext) in FORMATS.items())


#: Largest value of a 9-digit Shapefile field, which readers take for a 32-bit integer.
_SHAPEFILE_INT_MAX = 999_999_999


class _ShapefileIntegers(QgsVectorFileWriter.FieldValueConverter):
    """Writes the 64-bit integer fields whose values fit as 32-bit integers."""

    def __init__(self, layer: QgsVectorLayer) -> None:
        super().__init__()
        self._narrow: set[int] = set()
        for i, fld in enumerate(layer.fields()):
            if fld.type() not in (QVariant.LongLong, QVariant.ULongLong):
                continue
            low, high = layer.minimumValue(i), layer.maximumValue(i)
            if (low is None or int(low) >= -_SHAPEFILE_INT_MAX) and (
                high is None or int(high) <= _SHAPEFILE_INT_MAX
            ):
                self._narrow.add(i)
        self._fields = layer.fields()

    def fieldDefinition(self, field: QgsField) -> QgsField:  # noqa: N802 - QGIS API
        idx = self._fields.indexOf(field.name())
        if idx in self._narrow:
            return QgsField(field.name(), QVariant.Int, "integer", 9)
        return QgsField(field)

    def convert(self, idx: int, value):  # noqa: ANN001, ANN201 - QGIS API
        if idx in self._narrow and value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
        return value


class ExportLayerError(Exception):
    """The layer could not be written."""


def format_for_path(path: str) -> str:
    """The format a file name asks for (by extension; Shapefile when unknown)."""
    ext = os.path.splitext(path)[1].lower()
    for name, (_, e) in FORMATS.items():
        if e == ext or (ext == ".json" and name == "GeoJSON"):
            return name
    return "ESRI Shapefile"


def export_layer(layer: QgsVectorLayer, path: str, fmt: str | None = None,
                 transform_context: QgsCoordinateTransformContext | None = None) -> str:
    """Write ``layer`` to ``path``: Shapefile (with its .prj) and GeoPackage in the layer's
    CRS, GeoJSON in WGS 84 (RFC 7946).

    Args:
        layer: The layer to write.
        path: Output file; the format's extension is added when missing.
        fmt: A key of :data:`FORMATS`; default from the extension.
        transform_context: Default: the project's.

    Returns:
        The written file's path.

    Raises:
        ExportLayerError: OGR could not write it.
    """
    fmt = fmt or format_for_path(path)
    if fmt not in FORMATS:
        raise ExportLayerError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    driver, ext = FORMATS[fmt]
    if os.path.splitext(path)[1].lower() != ext and not (
        fmt == "GeoJSON" and path.lower().endswith(".json")
    ):
        path += ext
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = driver
    options.fileEncoding = "UTF-8"
    if driver == "GPKG":
        options.layerName = os.path.splitext(os.path.basename(path))[0]
    context = transform_context or QgsProject.instance().transformContext()
    converter = None
    if driver == "GeoJSON":
        options.layerOptions = ["RFC7946=YES", "WRITE_NAME=NO"]
        wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
        if layer.crs().isValid() and layer.crs() != wgs84:
            options.ct = QgsCoordinateTransform(layer.crs(), wgs84, context)
    elif driver == "ESRI Shapefile":
        converter = _ShapefileIntegers(layer)
        options.fieldValueConverter = converter
    result = QgsVectorFileWriter.writeAsVectorFormatV3(layer, path, context, options)
    err, msg = result[0], result[1]
    if err != QgsVectorFileWriter.NoError:
        raise ExportLayerError(f"Cannot write {path}: {msg or int(err)}")
    return path
