"""Labelled parcels (a polygon layer with a class field) as labels on a raster's grid.

Class table: the distinct values of the class field, as text, sorted (numerically when
they are all numbers), get ids ``0..K-1``; id = output channel of the model. With a class
table file (``VALUE,NAME`` lines, e.g. ``3,forest`` for a numeric ``LULC_ID``), values are
named and classes follow the file's order. Pixels in no
parcel are :data:`IGNORE_INDEX` (unlabelled, not "background"): analysts label some
parcels, not every pixel. When the parcels *are* complete inside the tiles they touch
(e.g. every building in a chip), pass ``background="other"`` and the uncovered pixels
there become that class.

Training needs at least two classes: a softmax over one class is constant, so the loss
is zero and nothing is learnt. One class alone is therefore refused with a hint to add a
background class (binary "building vs other" is then valid).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from rasterio import features
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from rs_reasoner.raster import open_raster, raster_transform
from rs_reasoner.vector.layers import (
    check_field_choice,
    check_layer_choice,
    unreadable_layer_error,
)
from rs_reasoner_training.data.dataset import IGNORE_INDEX
from rs_reasoner_training.errors import LabelLayerError

log = logging.getLogger(__name__)

LayerInput = str | os.PathLike[str] | gpd.GeoDataFrame
AoiInput = LayerInput | BaseGeometry

#: Class ids are stored as uint8 with 255 reserved for "ignore".
MAX_CLASSES = 254


@dataclass
class ParcelLayer:
    """Parcels ready to rasterise, in the raster's CRS.

    Attributes:
        frame: One row per parcel: ``geometry`` (polygonal, raster CRS), ``class_id``,
            ``class_name``, ``parcel_id`` (row number in the input layer).
        class_names: Class of each id.
        background_id: Id of the background class, or None (uncovered pixels ignored).
        aoi: Area of interest in the raster CRS, or None (the whole raster).
        notes: Things the user should know (dropped parcels, assumed CRS).
    """

    frame: gpd.GeoDataFrame
    class_names: list[str]
    background_id: int | None = None
    aoi: BaseGeometry | None = None
    notes: list[str] = field(default_factory=list)


def read_layer(labels: LayerInput, layer: str | None = None, what: str = "label layer"):
    """Read a vector layer (GeoPackage, Shapefile, GeoJSON, ...) or pass a frame through.

    Args:
        labels: Path of a vector file, or a GeoDataFrame.
        layer: Layer name inside a multi-layer file (GeoPackage).
        what: How the layer is named in error messages.

    Returns:
        The layer as a GeoDataFrame.

    Raises:
        LabelLayerError: Missing file, unreadable file, or an ambiguous multi-layer file.
    """
    if isinstance(labels, gpd.GeoDataFrame):
        return labels
    path = Path(os.fspath(labels))
    check_layer_choice(path, layer, what, LabelLayerError)
    try:
        return gpd.read_file(path, layer=layer)
    except Exception as exc:  # GDAL/pyogrio raise many types; all mean "cannot read"
        raise unreadable_layer_error(path, what, exc, LabelLayerError) from None


def _class_text(value: Any) -> str:
    """Class value as text; integral floats (1.0 from Shapefiles) lose the '.0'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _sorted_names(names: set[str]) -> list[str]:
    """Numbers sort numerically ('2' before '10'), otherwise alphabetically."""
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


def _to_crs(frame: gpd.GeoDataFrame, crs: Any, what: str, notes: list[str]) -> gpd.GeoDataFrame:
    """Reproject to the raster CRS; a missing CRS on either side is taken as the same."""
    if crs is None or frame.crs is None:
        if crs is not None or frame.crs is not None:
            notes.append(
                f"The {what} or the raster has no CRS; its coordinates are taken to be in "
                "the other's coordinate system."
            )
        return frame
    if frame.crs != crs:
        notes.append(f"The {what} was reprojected from {frame.crs.to_string()} to the raster CRS.")
        return frame.to_crs(crs)
    return frame


def _polygonal(geoms: gpd.GeoSeries) -> gpd.GeoSeries:
    """Repair invalid polygons and keep only their polygonal parts."""
    fixed = shapely.make_valid(np.asarray(geoms.values, dtype=object))
    out = []
    for g in fixed:
        if g is None or g.is_empty:
            out.append(None)
        elif g.geom_type in ("Polygon", "MultiPolygon"):
            out.append(g)
        else:  # GeometryCollection from make_valid: keep polygon parts, drop slivers
            parts = [
                p for p in getattr(g, "geoms", []) if p.geom_type in ("Polygon", "MultiPolygon")
            ]
            out.append(shapely.union_all(parts) if parts else None)
    return gpd.GeoSeries(out, index=geoms.index, crs=geoms.crs)


def _aoi_geometry(aoi: AoiInput, crs: Any, notes: list[str]) -> BaseGeometry:
    """Union of an AOI layer (or a geometry already in the raster CRS)."""
    if isinstance(aoi, BaseGeometry):
        geom = aoi
    else:
        frame = read_layer(aoi, what="area of interest")
        frame = _to_crs(frame, crs, "area of interest", notes)
        geom = shapely.union_all(_polygonal(frame.geometry).dropna().values)
    if geom is None or geom.is_empty or geom.area == 0:
        raise LabelLayerError(
            "The area of interest has no polygon area.",
            "Give a polygon layer (or geometry) for the area to train on, or none.",
        )
    return geom


def load_parcels(
    labels: LayerInput,
    class_field: str,
    raster_crs: Any,
    raster_bounds: tuple[float, float, float, float],
    *,
    layer: str | None = None,
    aoi: AoiInput | None = None,
    background: str | None = None,
    class_names: Mapping[str, str] | None = None,
) -> ParcelLayer:
    """Read, check and reproject the labelled parcels.

    Args:
        labels: Vector file path or GeoDataFrame with polygons.
        class_field: Field holding each parcel's class.
        raster_crs: CRS of the raster (parcels are reprojected to it), or None.
        raster_bounds: (left, bottom, right, top) of the raster in its CRS.
        layer: Layer name in a multi-layer file.
        aoi: Optional area of interest (vector file, frame, or geometry in raster CRS);
            parcels are clipped to it.
        background: Name of a class for pixels in no parcel inside labelled tiles (only
            when the parcels are complete there), or None to ignore those pixels.
        class_names: Name of each class field value (as text, e.g. ``{"3": "forest"}``;
            ``"-"``: leave those parcels out); classes then follow its order. None: the
            values are the names, sorted.

    Returns:
        The parcels and class table.

    Raises:
        LabelLayerError: Empty layer, missing class field, non-polygon geometries, no
            parcel on the raster (or in the AOI), fewer than two classes, too many classes.
    """
    notes: list[str] = []
    frame = read_layer(labels, layer)
    _check_layer(frame, labels, class_field)
    frame = frame.assign(parcel_id=np.arange(len(frame)))
    frame = _drop_unclassified(frame, class_field, notes)
    frame = _drop_empty(frame, notes)
    frame = _to_crs(frame, raster_crs, "label layer", notes)
    area, aoi_geom = _training_area(raster_bounds, aoi, raster_crs, notes)
    frame = _keep_inside(frame, area, aoi_geom, notes)
    texts = frame[class_field].map(_class_text)
    order = None
    if class_names is not None:
        texts, frame, order = _named(texts, frame, class_field, class_names, notes)
    class_names = _class_table(set(texts), background, order)
    ids = {n: i for i, n in enumerate(class_names)}
    out = gpd.GeoDataFrame(
        {
            "parcel_id": frame["parcel_id"].to_numpy(),
            "class_name": texts.to_numpy(),
            "class_id": texts.map(ids).to_numpy(dtype=np.int64),
        },
        geometry=frame.geometry.values,
        crs=frame.crs,
    ).reset_index(drop=True)
    for note in notes:
        log.info(note)  # shown to the user in the training plan
    return ParcelLayer(
        frame=out,
        class_names=class_names,
        background_id=ids[background] if background is not None else None,
        aoi=aoi_geom,
        notes=notes,
    )


def _check_layer(frame: gpd.GeoDataFrame, labels: LayerInput, class_field: str) -> None:
    """Refuse a layer with no features, without ``class_field`` or with non-polygons."""
    if len(frame) == 0:
        where = "" if isinstance(labels, gpd.GeoDataFrame) else f" {labels}"
        raise LabelLayerError(
            f"The label layer{where} has no features.",
            "Digitise some parcels (polygons with a class field) first.",
        )
    fields = [str(c) for c in frame.columns if c != frame.geometry.name]
    check_field_choice(fields, class_field, LabelLayerError)
    types = set(frame.geometry.dropna().geom_type)
    bad = sorted(types - {"Polygon", "MultiPolygon"})
    if bad:
        raise LabelLayerError(
            f"Training labels must be polygons; the layer also has {', '.join(bad)} geometries.",
            "Convert them to polygons (e.g. buffer lines/points in QGIS) or remove them.",
        )


def _drop_unclassified(
    frame: gpd.GeoDataFrame, class_field: str, notes: list[str]
) -> gpd.GeoDataFrame:
    """Leave out parcels with no value in the class field (refused if that is all)."""
    values = frame[class_field]
    missing = values.isna() | (values.astype(str).str.strip() == "")
    if missing.all():
        raise LabelLayerError(
            f"No parcel has a value in the class field {class_field!r}.",
            "Fill in the class of each parcel, or choose another field.",
        )
    if missing.any():
        notes.append(f"{int(missing.sum())} parcel(s) without a class were left out.")
    return frame.loc[~missing]


def _drop_empty(frame: gpd.GeoDataFrame, notes: list[str]) -> gpd.GeoDataFrame:
    """Repair geometries to their polygonal parts and leave out the empty ones."""
    frame = frame.set_geometry(_polygonal(frame.geometry))
    empty = frame.geometry.isna() | frame.geometry.is_empty
    if empty.all():
        raise LabelLayerError("Every parcel geometry is empty.", "Check the label layer.")
    if empty.any():
        notes.append(f"{int(empty.sum())} parcel(s) with empty geometry were left out.")
    return frame.loc[~empty]


def _training_area(
    raster_bounds: tuple[float, float, float, float],
    aoi: AoiInput | None,
    crs: Any,
    notes: list[str],
) -> tuple[BaseGeometry, BaseGeometry | None]:
    """The raster's footprint, cut to the AOI when one is given; and the AOI itself."""
    area = box(*raster_bounds)
    if aoi is None:
        return area, None
    aoi_geom = _aoi_geometry(aoi, crs, notes)
    if not aoi_geom.intersects(area):
        raise LabelLayerError(
            "The area of interest does not overlap the raster.",
            "Check that it is drawn over the raster (and its CRS).",
        )
    return area.intersection(aoi_geom), aoi_geom


def _keep_inside(
    frame: gpd.GeoDataFrame,
    area: BaseGeometry,
    aoi_geom: BaseGeometry | None,
    notes: list[str],
) -> gpd.GeoDataFrame:
    """The parcels touching ``area``, clipped to the AOI (refused when none touch)."""
    inside = frame.geometry.intersects(area)
    if not inside.any():
        lb = ", ".join(f"{v:.6g}" for v in frame.total_bounds)
        rb = ", ".join(f"{v:.6g}" for v in area.bounds)
        where = " inside the area of interest" if aoi_geom is not None else ""
        raise LabelLayerError(
            f"No parcel lies on the raster{where}: "
            f"parcels span ({lb}), the raster ({rb}) in the raster's CRS.",
            "Give parcels drawn over this raster; if they look right in QGIS, the layer's "
            "CRS is probably wrong (set it in the layer properties).",
        )
    if not inside.all():
        notes.append(f"{int((~inside).sum())} parcel(s) outside the raster/AOI were left out.")
    frame = frame.loc[inside]
    if aoi_geom is not None:
        frame = frame.set_geometry(_polygonal(frame.geometry.intersection(aoi_geom)))
        frame = frame.loc[~(frame.geometry.isna() | frame.geometry.is_empty)]
    return frame


def _named(
    texts: pd.Series,
    frame: gpd.GeoDataFrame,
    class_field: str,
    names: Mapping[str, str],
    notes: list[str],
) -> tuple[pd.Series, gpd.GeoDataFrame, list[str]]:
    """Class field values → the names a class table gives them; parcels named ``-`` left out.

    Returns:
        The parcels' class names, the parcels kept, the class order of the table.

    Raises:
        LabelLayerError: Values the table does not name.
    """
    table = {_class_text(k): v for k, v in names.items()}
    unknown = sorted(set(texts) - set(table), key=str)
    if unknown:
        shown = ", ".join(repr(v) for v in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
        raise LabelLayerError(
            f"Value(s) {shown} of the class field {class_field!r} are not in the class table.",
            "Add a 'VALUE,NAME' line for each (NAME '-' leaves those parcels out).",
        )
    keep = texts.map(table) != "-"
    if not keep.all():
        notes.append(f"{int((~keep).sum())} parcel(s) of values named '-' were left out.")
    order = list(dict.fromkeys(n for n in table.values() if n != "-"))
    return texts[keep].map(table), frame.loc[keep], order


def _class_table(
    names: set[str], background: str | None, order: list[str] | None = None
) -> list[str]:
    """The class of each id: the parcels' classes and the background class, sorted (or in
    ``order``, a class table's, the background last).

    Raises:
        LabelLayerError: Fewer than two classes (nothing to learn), or more than
            :data:`MAX_CLASSES`.
    """
    if background is not None:
        names = names | {background}
    if len(names) < 2:
        raise LabelLayerError(
            f"All parcels have the same class ({next(iter(names))!r}); training needs at "
            "least two classes.",
            "Label parcels of another class too, or, if the parcels are complete where they "
            "are (every object drawn), set a background class (e.g. 'other') for the rest.",
        )
    if order is None:
        class_names = _sorted_names(names)
    else:
        class_names = [n for n in order if n in names] + sorted(names - set(order))
    if len(class_names) > MAX_CLASSES:
        raise LabelLayerError(
            f"The class field has {len(class_names)} distinct values; at most {MAX_CLASSES} "
            "classes are supported.",
            "Is it the right field (not an id or a name per parcel)?",
        )
    return class_names


def rasterize_parcels(
    frame: gpd.GeoDataFrame,
    transform: Affine,
    shape: tuple[int, int],
    *,
    fill: int = IGNORE_INDEX,
    ignored: gpd.GeoDataFrame | None = None,
    aoi: BaseGeometry | None = None,
) -> np.ndarray:
    """Burn parcels' class ids onto a grid (pixels whose centre lies in a parcel).

    Larger parcels are burnt first, so a small parcel inside a large one keeps its class.

    Args:
        frame: Parcels with ``geometry`` and ``class_id``, in the grid's CRS.
        transform: Affine of the grid (a window's transform for a tile).
        shape: (rows, cols).
        fill: Value of pixels in no parcel (ignore, or the background id).
        ignored: Parcels whose pixels must be ignored (e.g. left out by a label budget);
            burnt last.
        aoi: Pixels outside it become ignore.

    Returns:
        (rows, cols) uint8 label map.
    """
    out = np.full(shape, fill, dtype=np.uint8)
    if len(frame):
        order = np.argsort(-frame.geometry.area.to_numpy(), kind="stable")
        shapes = [(frame.geometry.iloc[i], int(frame["class_id"].iloc[i])) for i in order]
        features.rasterize(shapes, out=out, transform=transform)
    if ignored is not None and len(ignored):
        features.rasterize(
            ((g, IGNORE_INDEX) for g in ignored.geometry), out=out, transform=transform
        )
    if aoi is not None:
        outside = features.geometry_mask([aoi], out_shape=shape, transform=transform)
        out[outside] = IGNORE_INDEX
    return out


def label_raster(
    raster: str | os.PathLike[str],
    labels: LayerInput,
    class_field: str,
    *,
    layer: str | None = None,
    aoi: AoiInput | None = None,
    background: str | None = None,
) -> tuple[np.ndarray, ParcelLayer]:
    """Labels of a whole raster from its parcels (for small rasters, checks and previews).

    Training reads labels tile by tile instead (:mod:`rs_reasoner_training.data.tiles`).

    Args:
        raster: Raster path.
        labels: Parcels (vector path or GeoDataFrame).
        class_field: Class field.
        layer: Layer name in a multi-layer file.
        aoi: Optional area of interest.
        background: Background class for uncovered pixels, or None (ignore).

    Returns:
        ((rows, cols) uint8 labels on the raster grid, the parcels).
    """
    with open_raster(raster) as ds:
        transform, shape, crs = raster_transform(ds), (ds.height, ds.width), ds.crs
    bounds = grid_bounds(transform, shape)
    parcels = load_parcels(
        labels, class_field, crs, bounds, layer=layer, aoi=aoi, background=background
    )
    fill = IGNORE_INDEX if parcels.background_id is None else parcels.background_id
    return rasterize_parcels(parcels.frame, transform, shape, fill=fill, aoi=parcels.aoi), parcels


def grid_bounds(transform: Affine, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a grid, whatever the signs of its pixel sizes."""
    corners = [transform @ (c, r) for r in (0, shape[0]) for c in (0, shape[1])]
    xs, ys = zip(*corners, strict=True)
    return min(xs), min(ys), max(xs), max(ys)


__all__ = [
    "MAX_CLASSES",
    "ParcelLayer",
    "grid_bounds",
    "label_raster",
    "load_parcels",
    "rasterize_parcels",
    "read_layer",
]
