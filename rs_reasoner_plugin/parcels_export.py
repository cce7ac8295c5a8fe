"""Labelled parcels for ``POST /train``: a file the backend can read by path, or a
temporary GeoPackage written from the layer.

File-based OGR layers (GeoPackage, Shapefile, GeoJSON) are sent as their path (plus the
layer name inside a GeoPackage). Everything else — memory layers, other providers, a
subset filter, unsaved edits, a class field QGIS computes (expression, join), or "only
selected parcels" — is written to a GeoPackage first: :func:`prepare_parcels_export` runs
on the GUI thread (it touches the layer), :func:`write_parcels` only uses a
:class:`QgsVectorLayerFeatureSource`, so it runs inside ``QgsTask.run()``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsFeatureRequest,
    QgsFields,
    QgsGeometry,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsVectorLayerFeatureSource,
    QgsWkbTypes,
)

from .errors import PluginUserError
from .layer_files import local_source

#: Extensions the backend reads as parcels (GeoPackage, Shapefile, GeoJSON).
READABLE_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json")
#: Table name of exported parcels.
EXPORT_LAYER = "parcels"


class ParcelsError(PluginUserError):
    """The parcels cannot be used as asked. ``hint`` says what to change."""


def local_vector_file(layer: QgsVectorLayer, class_field: str) -> tuple[str, str | None] | None:
    """``(path, layer name or None)`` when the backend can read ``layer`` by path, else None.

    Args:
        layer: The parcels layer.
        class_field: The field the backend will read (it must be stored in the file).

    Returns:
        The file and, for GeoPackages, the table; None when the layer must be exported.
    """
    found = local_source(layer, "ogr")
    if found is None:
        return None
    path, parts = found
    if layer.subsetString().strip() or (layer.isEditable() and layer.isModified()):
        return None  # the file holds other features than the layer shows
    idx = layer.fields().indexOf(class_field)
    if idx < 0 or layer.fields().fieldOrigin(idx) != QgsFields.OriginProvider:
        return None  # an expression or joined field exists only in QGIS
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in READABLE_SUFFIXES:
        return None
    if suffix != ".gpkg":
        return path, None
    table = parts.get("layerName")
    if not isinstance(table, str) or not table:  # (NULL QVariant when absent)
        table = _gpkg_table(path, parts.get("layerId"))
    if not table:
        return None
    return path, table


def _gpkg_table(path: str, layer_id: Any) -> str | None:
    """Table name of a GeoPackage layer opened by index (QGIS drops ``layerid=0``: no
    index means the first table)."""
    from osgeo import ogr

    try:
        index = int(layer_id) if isinstance(layer_id, (int, str)) and layer_id != "" else 0
    except ValueError:
        return None
    ds = ogr.Open(path)
    if ds is None or not 0 <= index < ds.GetLayerCount():
        return None
    return str(ds.GetLayer(index).GetName())


@dataclass
class ParcelsExport:
    """A polygon layer's features (a thread-safe copy of its source) to write.

    Attributes:
        source: Feature source made from the layer on the GUI thread.
        fields: The one field written (the class field).
        class_index: Index of the class field in the layer.
        crs: The layer's CRS.
        fids: Features to write (selected ones), or None for all.
        layer_name: The layer's name, for messages.
    """

    source: QgsVectorLayerFeatureSource
    fields: QgsFields
    class_index: int
    crs: QgsCoordinateReferenceSystem
    fids: list[int] | None
    layer_name: str


def prepare_parcels_export(
    layer: QgsVectorLayer, class_field: str, selected_only: bool = False
) -> ParcelsExport:
    """Plan writing ``layer``'s parcels (only ``class_field``); call on the GUI thread.

    Raises:
        ParcelsError: The field is missing, or no parcel is selected.
    """
    idx = layer.fields().indexOf(class_field)
    if idx < 0:
        raise ParcelsError(f"Layer '{layer.name()}' has no field '{class_field}'.",
                           "Choose the field that holds each parcel's class.")
    fids = None
    if selected_only:
        fids = sorted(layer.selectedFeatureIds())
        if not fids:
            raise ParcelsError(f"No parcel of layer '{layer.name()}' is selected.",
                               "Select parcels on the map, or untick 'Only selected parcels'.")
    fields = QgsFields()
    fields.append(layer.fields().at(idx))
    return ParcelsExport(
        source=QgsVectorLayerFeatureSource(layer),
        fields=fields,
        class_index=idx,
        crs=QgsCoordinateReferenceSystem(layer.crs()),
        fids=fids,
        layer_name=layer.name(),
    )


def _multipolygon(geom: QgsGeometry) -> QgsGeometry | None:
    """2D MultiPolygon (curves segmentised), or None when there is nothing polygonal."""
    if geom is None or geom.isNull() or geom.isEmpty():
        return None
    if QgsWkbTypes.geometryType(geom.wkbType()) != QgsWkbTypes.PolygonGeometry:
        return None
    shape = geom.constGet().segmentize() if QgsWkbTypes.isCurvedType(geom.wkbType()) else (
        geom.constGet().clone())
    shape.dropZValue()
    shape.dropMValue()
    out = QgsGeometry(shape)
    out.convertToMultiType()
    return out


def write_parcels(
    export: ParcelsExport, path: str, is_cancelled: Callable[[], bool] | None = None
) -> int:
    """Write the parcels to a new GeoPackage ``path`` (table :data:`EXPORT_LAYER`).

    Any thread. The file appears only when complete (written under another name first).

    Returns:
        The number of parcels written.

    Raises:
        ParcelsError: QGIS could not write the file, or no parcel has a polygon.
    """
    tmp = path + ".part.gpkg"
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = EXPORT_LAYER
    options.fileEncoding = "UTF-8"
    writer = QgsVectorFileWriter.create(
        tmp, export.fields, QgsWkbTypes.MultiPolygon, export.crs,
        QgsCoordinateTransformContext(), options)
    try:
        if writer.hasError() != QgsVectorFileWriter.NoError:
            raise ParcelsError(f"QGIS could not create {tmp}: {writer.errorMessage()}",
                               "Check free space in the temporary folder.")
        request = QgsFeatureRequest().setSubsetOfAttributes([export.class_index])
        if export.fids is not None:
            request.setFilterFids(export.fids)
        written = 0
        for feature in export.source.getFeatures(request):
            if is_cancelled is not None and is_cancelled():
                raise ParcelsError("Export cancelled.")
            geom = _multipolygon(feature.geometry())
            if geom is None:
                continue
            out = QgsFeature(export.fields)
            out.setGeometry(geom)
            out.setAttribute(0, feature.attribute(export.class_index))
            if not writer.addFeature(out):
                raise ParcelsError(f"QGIS could not write a parcel to {tmp}: "
                                   f"{writer.errorMessage()}",
                                   "Check free space in the temporary folder.")
            written += 1
        writer = None  # closes the file
        if written == 0:
            raise ParcelsError(f"Layer '{export.layer_name}' has no parcel with a polygon "
                               "geometry to train on.",
                               "Draw or select polygons with a class value.")
        os.replace(tmp, path)
        return written
    except BaseException:
        writer = None  # close before removing
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
