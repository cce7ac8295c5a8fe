"""Backend results (GeoJSON FeatureCollection with a ``crs`` member) → a GeoPackage in the
results folder → a styled layer in the project.

:func:`write_geopackage` touches no layer or project, so it runs inside QgsTask.run();
:func:`load_result_layer` and :func:`add_to_project` run on the GUI thread.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRendererCategory,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QColor

from .errors import PluginUserError
from .result_style import class_colours, round_area

#: Attributes the backend returns, in this order, with their types.
KNOWN_FIELDS: list[tuple[str, QVariant.Type]] = [
    ("label", QVariant.String),
    ("score", QVariant.Double),
    ("area", QVariant.Double),
    ("query", QVariant.String),
    ("mode", QVariant.String),
    ("model", QVariant.String),
    ("reasoning", QVariant.String),
]
#: Name of the layer group results are added to.
GROUP_NAME = "RS Reasoner results"


class ResultError(PluginUserError):
    """The result cannot be turned into a layer. ``hint`` says what to do."""


@dataclass
class WrittenResult:
    """A GeoPackage written by :func:`write_geopackage`.

    Attributes:
        path: The .gpkg file.
        table: Its layer (table) name.
        feature_count: Features written.
        crs: CRS of the features.
        labels: Distinct labels in order of first appearance.
        reasoning: The model's reasoning text ('' when none).
    """

    path: str
    table: str
    feature_count: int
    crs: QgsCoordinateReferenceSystem
    labels: list[str]
    reasoning: str = ""


# -- pure helpers ----------------------------------------------------------------------------


def slug(text: str, max_len: int = 40) -> str:
    """A file/table-safe version of a query."""
    s = re.sub(r"[^0-9A-Za-z]+", "_", text.strip().lower()).strip("_")
    return (s[:max_len].rstrip("_") or "result")


def layer_display_name(query: str, max_len: int = 60) -> str:
    """The layer's name in the project: the query (shortened)."""
    q = " ".join(query.split())
    return q if len(q) <= max_len else q[: max_len - 1].rstrip() + "…"


def result_path(folder: Path, query: str) -> Path:
    """A new GeoPackage path in ``folder`` named after the query and the time."""
    stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    base = f"{slug(query)}_{stamp}"
    path = folder / f"{base}.gpkg"
    n = 2
    while path.exists():
        path = folder / f"{base}_{n}.gpkg"
        n += 1
    return path


def crs_from_geojson(collection: dict[str, Any]) -> QgsCoordinateReferenceSystem | None:
    """The CRS named by a FeatureCollection's ``crs`` member (named or WKT), or None."""
    member = collection.get("crs")
    if not member:
        return None
    text: Any = None
    if isinstance(member, str):
        text = member
    elif isinstance(member, dict):
        props = member.get("properties") or {}
        text = props.get("name") or props.get("wkt") or props.get("proj4") or props.get("code")
        if text is None and member.get("wkt"):
            text = member.get("wkt")
        if isinstance(text, int):
            text = f"EPSG:{text}"
    if not text:
        return None
    crs = QgsCoordinateReferenceSystem()
    if not crs.createFromUserInput(str(text)) or not crs.isValid():
        return None
    return crs


def _ring(coords: list) -> list[QgsPointXY]:
    return [QgsPointXY(float(c[0]), float(c[1])) for c in coords]


def geometry_from_geojson(geom: dict[str, Any] | None) -> QgsGeometry:
    """A QgsGeometry (always multi-polygon for polygons) from a GeoJSON geometry."""
    if not geom:
        return QgsGeometry()
    gtype = geom.get("type")
    coords = geom.get("coordinates")
    if gtype == "Polygon":
        return QgsGeometry.fromMultiPolygonXY([[_ring(r) for r in coords]])
    if gtype == "MultiPolygon":
        return QgsGeometry.fromMultiPolygonXY([[_ring(r) for r in p] for p in coords])
    from osgeo import ogr  # other types: let OGR parse them

    g = ogr.CreateGeometryFromJson(json.dumps(geom))
    if g is None:
        return QgsGeometry()
    out = QgsGeometry()
    out.fromWkb(bytes(g.ExportToIsoWkb()))
    return out


def _variant_type(value: Any) -> QVariant.Type:
    if isinstance(value, bool):
        return QVariant.Bool
    if isinstance(value, int):
        return QVariant.LongLong
    if isinstance(value, float):
        return QVariant.Double
    return QVariant.String


def build_fields(features: list[dict[str, Any]]) -> QgsFields:
    """The known attributes first, then any others the backend sent."""
    fields = QgsFields()
    known = dict(KNOWN_FIELDS)
    for name, vtype in KNOWN_FIELDS:
        fields.append(QgsField(name, vtype))
    extra: dict[str, QVariant.Type] = {}
    for f in features:
        for k, v in (f.get("properties") or {}).items():
            if k in known or k in extra or v is None:
                continue
            extra[k] = _variant_type(v)
    for name, vtype in extra.items():
        fields.append(QgsField(name, vtype))
    return fields


def _attr(value: Any, vtype: QVariant.Type) -> Any:
    if value is None:
        return None
    if vtype == QVariant.String and not isinstance(value, str):
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    if vtype == QVariant.Double:
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return value


def result_crs(
    collection: dict[str, Any],
    fallback_crs: QgsCoordinateReferenceSystem,
    target_crs: QgsCoordinateReferenceSystem | None = None,
) -> tuple[QgsCoordinateReferenceSystem, QgsCoordinateReferenceSystem]:
    """(CRS of the result's coordinates, CRS of the output).

    The coordinates are in ``fallback_crs`` (the raster layer's CRS as QGIS sees it) when it
    is valid, since the backend works in the raster's own coordinates; the result's ``crs``
    member is used when the layer has none. The output is ``target_crs`` when given.
    """
    src = QgsCoordinateReferenceSystem(fallback_crs) if fallback_crs is not None else None
    if src is None or not src.isValid():
        src = crs_from_geojson(collection) or QgsCoordinateReferenceSystem()
    out = src
    if target_crs is not None and target_crs.isValid() and src.isValid():
        out = QgsCoordinateReferenceSystem(target_crs)
    return src, out


def iter_features(
    collection: dict[str, Any],
    fields: QgsFields,
    src_crs: QgsCoordinateReferenceSystem,
    out_crs: QgsCoordinateReferenceSystem,
    transform_context: QgsCoordinateTransformContext | None = None,
    clip: QgsGeometry | None = None,
) -> Iterator[QgsFeature]:
    """The result's polygons as features with ``fields``, in ``out_crs`` (any thread).

    ``clip`` (in ``out_crs``) keeps only the parts inside it (``area`` is recomputed).
    """
    transform = None
    if src_crs.isValid() and out_crs.isValid() and src_crs != out_crs:
        transform = QgsCoordinateTransform(
            src_crs, out_crs, transform_context or QgsCoordinateTransformContext()
        )
    for f in collection.get("features") or []:
        props = f.get("properties") or {}
        geom = geometry_from_geojson(f.get("geometry"))
        if geom.isNull() or geom.isEmpty():
            continue
        if transform is not None:
            geom.transform(transform)
        if clip is not None:
            geom = geom.intersection(clip)
            if geom.isNull() or geom.isEmpty():
                continue
            if QgsWkbTypes.geometryType(geom.wkbType()) != QgsWkbTypes.PolygonGeometry:
                continue
            geom.convertToMultiType()
            props = dict(props, area=geom.area())
        if isinstance(props.get("area"), (int, float)):
            props = dict(props, area=round_area(float(props["area"]), out_crs.isGeographic()))
        feat = QgsFeature(fields)
        feat.setGeometry(geom)
        for i, fld in enumerate(fields):
            feat.setAttribute(i, _attr(props.get(fld.name()), fld.type()))
        yield feat


# -- writing (any thread) --------------------------------------------------------------------


def write_geopackage(
    collection: dict[str, Any],
    path: str | Path,
    table: str,
    fallback_crs: QgsCoordinateReferenceSystem,
    target_crs: QgsCoordinateReferenceSystem | None = None,
    transform_context: QgsCoordinateTransformContext | None = None,
    clip: QgsGeometry | None = None,
) -> WrittenResult:
    """Write a backend result to a new GeoPackage.

    Args:
        collection: The GeoJSON FeatureCollection from ``GET /jobs/{id}/result``.
        path: The .gpkg to create.
        table: Its layer name.
        fallback_crs: CRS of the coordinates when the result names none (the raster's).
        target_crs: Reproject to this CRS (None: keep the result's).
        transform_context: For the reprojection (the project's).
        clip: Keep only the parts inside this geometry (in the output CRS).

    Raises:
        ResultError: The file cannot be written.
    """
    features = collection.get("features") or []
    fields = build_fields(features)
    src_crs, out_crs = result_crs(collection, fallback_crs, target_crs)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = table
    options.fileEncoding = "UTF-8"
    options.actionOnExistingFile = QgsVectorFileWriter.CreateOrOverwriteFile
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer = QgsVectorFileWriter.create(
        str(path), fields, QgsWkbTypes.MultiPolygon, out_crs,
        transform_context or QgsCoordinateTransformContext(), options,
    )
    if writer.hasError() != QgsVectorFileWriter.NoError:
        msg = writer.errorMessage()
        del writer
        raise ResultError(f"Cannot write the result to {path}: {msg}",
                          "Pick a writable results folder in RS Reasoner ▸ Settings.")
    labels: list[str] = []
    reasoning = ""
    count = 0
    try:
        for feat in iter_features(collection, fields, src_crs, out_crs, transform_context,
                                  clip):
            if not writer.addFeature(feat):
                raise ResultError(f"Cannot write a feature to {path}: {writer.errorMessage()}")
            label = str(feat["label"] or "")
            if label not in labels:
                labels.append(label)
            if not reasoning and feat["reasoning"]:
                reasoning = str(feat["reasoning"])
            count += 1
    finally:
        del writer  # closes the file
    return WrittenResult(path=str(path), table=table, feature_count=count, crs=out_crs,
                         labels=labels, reasoning=reasoning)


# -- layers (GUI thread) ---------------------------------------------------------------------


def load_result_layer(written: WrittenResult, name: str) -> QgsVectorLayer:
    """Open the GeoPackage's table as a layer named ``name``, styled per label.

    Raises:
        ResultError: QGIS cannot open it.
    """
    layer = QgsVectorLayer(f"{written.path}|layername={written.table}", name, "ogr")
    if not layer.isValid():
        raise ResultError(f"QGIS cannot open the result {written.path}.")
    if written.crs.isValid() and layer.crs() != written.crs:
        layer.setCrs(written.crs)
    style_by_label(layer)
    return layer


def load_class_layers(written: WrittenResult, name: str) -> list[QgsVectorLayer]:
    """One layer per label of the GeoPackage's table (a filter on ``label`` each), named
    ``"<name> — <label>"``, in the order the labels first appear.

    Raises:
        ResultError: QGIS cannot open it.
    """
    layers = []
    for label in written.labels:
        layer = load_result_layer(written, f"{name} — {label or '(no label)'}")
        quoted = label.replace("'", "''")
        layer.setSubsetString(f"\"label\" = '{quoted}'")
        style_by_label(layer)
        layers.append(layer)
    return layers


def style_by_label(layer: QgsVectorLayer) -> None:
    """A categorized renderer on ``label``: one semi-transparent colour per label, the
    colour of its meaning where it has one (:mod:`.result_style`)."""
    idx = layer.fields().indexOf("label")
    if idx < 0:
        return
    values = sorted({str(v) for v in layer.uniqueValues(idx) if v is not None})
    colours = class_colours(values)
    categories = []
    for value in values:
        colour = QColor(colours[value])
        symbol = QgsFillSymbol.createSimple({
            "color": f"{colour.red()},{colour.green()},{colour.blue()},110",
            "outline_color": colour.name(),
            "outline_width": "0.5",
        })
        categories.append(QgsRendererCategory(value, symbol, value or "(no label)"))
    if not categories:
        return
    layer.setRenderer(QgsCategorizedSymbolRenderer("label", categories))
    layer.triggerRepaint()


def add_to_project(layer: QgsVectorLayer, project: QgsProject | None = None) -> QgsVectorLayer:
    """Add ``layer`` at the top of the 'RS Reasoner results' group."""
    project = project or QgsProject.instance()
    project.addMapLayer(layer, False)
    root = project.layerTreeRoot()
    group = root.findGroup(GROUP_NAME) or root.insertGroup(0, GROUP_NAME)
    group.insertLayer(0, layer)
    return layer
