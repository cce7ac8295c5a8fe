"""The fine-tune dialog's first guesses: the raster that lies under the parcels, and the
field that holds their class (never the feature id)."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateTransform,
    QgsMapLayer,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant

#: Field names that number features rather than class them.
ID_NAMES = frozenset({"fid", "id", "ogc_fid", "objectid", "gid", "ogr_fid", "fid_", "uid"})
#: At most this many distinct values make a field look like a class field.
MAX_CLASSES = 100


def parcels_extent_in(parcels: QgsVectorLayer, layer: QgsMapLayer) -> QgsRectangle:
    """The parcels' extent in ``layer``'s CRS."""
    ext = parcels.extent()
    if parcels.crs().isValid() and layer.crs().isValid() and parcels.crs() != layer.crs():
        tr = QgsCoordinateTransform(parcels.crs(), layer.crs(), QgsProject.instance())
        try:
            ext = tr.transformBoundingBox(ext)
        except Exception:  # noqa: BLE001 - outside the CRS's domain: no overlap
            return QgsRectangle()
    return ext


def overlap_share(parcels: QgsVectorLayer, raster: QgsRasterLayer) -> float:
    """Share (0–1) of the parcels' extent that the raster covers."""
    ext = parcels_extent_in(parcels, raster)
    if ext.isEmpty() or not ext.intersects(raster.extent()):
        return 0.0
    inter = ext.intersect(raster.extent())
    area = ext.width() * ext.height()
    return 1.0 if area <= 0 else inter.width() * inter.height() / area


def raster_under(parcels: QgsVectorLayer,
                 project: QgsProject | None = None) -> QgsRasterLayer | None:
    """The project's raster covering most of the parcels (None when none covers any)."""
    project = project or QgsProject.instance()
    best, best_share = None, 0.0
    for layer in project.mapLayers().values():
        if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
            continue
        share = overlap_share(parcels, layer)
        if share > best_share:
            best, best_share = layer, share
    return best


def _is_id(layer: QgsVectorLayer, index: int) -> bool:
    return index in layer.primaryKeyAttributes() or (
        layer.fields().at(index).name().lower() in ID_NAMES)


def guess_class_field(layer: QgsVectorLayer) -> str | None:
    """The field most likely to hold each parcel's class.

    Fields that number the features (the primary key, ``fid``, ``id``...) are never chosen;
    text fields come before numbers, and fields whose values repeat (2 to
    :data:`MAX_CLASSES` distinct values, fewer than the features) before the others.

    Returns:
        A field name, or None when the layer has only id fields.
    """
    count = max(layer.featureCount(), 0)
    ranked = []
    for i, fld in enumerate(layer.fields()):
        if _is_id(layer, i):
            continue
        distinct = len(layer.uniqueValues(i, MAX_CLASSES + 1))
        repeats = 2 <= distinct <= MAX_CLASSES and (count == 0 or distinct < count)
        text = fld.type() == QVariant.String
        ranked.append((not repeats, not text, i, fld.name()))
    return min(ranked)[3] if ranked else None
