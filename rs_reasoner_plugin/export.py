"""Export a result layer as an ESRI Shapefile (with .prj), GeoPackage or GeoJSON."""

from __future__ import annotations

import os

from qgis.core import QgsCoordinateTransformContext, QgsProject, QgsVectorFileWriter, QgsVectorLayer

#: Format name shown to users → (OGR driver, extension).
FORMATS: dict[str, tuple[str, str]] = {
    "ESRI Shapefile": ("ESRI Shapefile", ".shp"),
    "GeoPackage": ("GPKG", ".gpkg"),
    "GeoJSON": ("GeoJSON", ".geojson"),
}
#: File dialog filter.
FILE_FILTER = ";;".join(f"{name} (*{ext})" for name, (_, ext) in FORMATS.items())


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
    """Write ``layer`` to ``path`` in its own CRS (a Shapefile gets its .prj).

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
    if driver == "GeoJSON":
        # Keep the layer's CRS (RFC 7946 would force WGS 84).
        options.layerOptions = ["RFC7946=NO", "WRITE_NAME=NO"]
    context = transform_context or QgsProject.instance().transformContext()
    result = QgsVectorFileWriter.writeAsVectorFormatV3(layer, path, context, options)
    err, msg = result[0], result[1]
    if err != QgsVectorFileWriter.NoError:
        raise ExportLayerError(f"Cannot write {path}: {msg or int(err)}")
    return path
