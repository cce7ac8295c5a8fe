"""Label rasters → polygons with attributes, and reprojection of the result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS, Geod
from scipy import ndimage

#: Columns every result has, in order, before the request's attributes.
BASE_COLUMNS = ("label", "score", "area")

# 4-connectivity: two objects touching at a corner stay two polygons, as in rasterio.features.
_FOUR = ndimage.generate_binary_structure(2, 1)


def _components(
    labels: np.ndarray, instances: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Number every object: instances where given, else 4-connected runs of one label.

    Returns:
        (component ids (H, W) int32 with 0 = none, label of each id, instance of each id),
        the last two indexed by id.
    """
    comp = np.zeros(labels.shape, dtype=np.int32)
    comp_label = [0]
    comp_instance = [0]
    next_id = 1
    if instances is not None:
        inst_mask = (instances > 0) & (labels > 0)
        if inst_mask.any():
            pairs, inverse = np.unique(
                np.stack([labels[inst_mask], instances[inst_mask]]), axis=1, return_inverse=True
            )
            comp[inst_mask] = next_id + inverse.ravel().astype(np.int32)
            comp_label += pairs[0].tolist()
            comp_instance += pairs[1].tolist()
            next_id += pairs.shape[1]
        rest = (labels > 0) & ~inst_mask
    else:
        rest = labels > 0
    for k in np.unique(labels[rest]):
        ids, n = ndimage.label(rest & (labels == k), structure=_FOUR)
        if n == 0:
            continue
        hit = ids > 0
        comp[hit] = ids[hit] + (next_id - 1)
        comp_label += [int(k)] * n
        comp_instance += [0] * n
        next_id += n
    return comp, np.asarray(comp_label), np.asarray(comp_instance)


def _polygons(comp: np.ndarray, transform: Affine) -> tuple[list[int], list[Any]]:
    """One polygon (or MultiPolygon) per component id, from a single GDAL polygonize pass.

    Geometries are assembled in one vectorised shapely call: building them one by one
    dominates the run time on noisy masks with 10^5 objects.
    """
    values: list[int] = []
    rings: list[np.ndarray] = []
    ring_counts: list[int] = []
    for geom, value in rasterio.features.shapes(
        comp, mask=comp > 0, connectivity=4, transform=transform
    ):
        values.append(int(value))
        coords = geom["coordinates"]
        ring_counts.append(len(coords))
        rings.extend(np.asarray(ring, dtype=np.float64) for ring in coords)
    if not values:
        return [], []
    ring_offsets = np.concatenate([[0], np.cumsum([len(r) for r in rings])])
    poly_offsets = np.concatenate([[0], np.cumsum(ring_counts)])
    polys = shapely.from_ragged_array(
        shapely.GeometryType.POLYGON, np.concatenate(rings), (ring_offsets, poly_offsets)
    )
    order = np.argsort(values, kind="stable")
    ids, starts, sizes = np.unique(np.asarray(values)[order], return_index=True,
                                   return_counts=True)
    geoms: list[Any] = []
    for start, size in zip(starts, sizes, strict=True):
        idx = order[start : start + size]
        # Parts of one id come from one polygonize pass, so they never overlap.
        geoms.append(polys[idx[0]] if size == 1 else shapely.MultiPolygon(list(polys[idx])))
    return ids.tolist(), geoms


def _fill_small_holes(geoms: list[Any], min_area: float) -> list[Any]:
    """Fill holes smaller than ``min_area``: a speck inside a field is not a gap in it."""
    arr = np.asarray(geoms, dtype=object)
    parts, owner = shapely.get_parts(arr, return_index=True)
    rings, ring_owner = shapely.get_rings(parts, return_index=True)
    exterior = np.r_[True, ring_owner[1:] != ring_owner[:-1]]  # each part's first ring
    small = ~exterior & (shapely.area(shapely.polygons(rings)) < min_area)
    if not small.any():
        return geoms
    for i in np.unique(ring_owner[small]):
        mine = (ring_owner == i) & ~small
        parts[i] = shapely.Polygon(rings[mine & exterior][0], list(rings[mine & ~exterior]))
    out = list(arr)
    for j in np.unique(owner[np.unique(ring_owner[small])]):
        mine = parts[owner == j]
        out[j] = mine[0] if len(mine) == 1 and arr[j].geom_type == "Polygon" else (
            shapely.MultiPolygon(list(mine))
        )
    return out


def _areas(geoms: Sequence[Any], crs: CRS | None) -> np.ndarray:
    """Areas in square map units; square metres (geodesic) for geographic CRSs."""
    if not len(geoms):
        return np.zeros(0)
    if crs is not None and crs.is_geographic:
        geod = Geod(ellps="WGS84") if crs.ellipsoid is None else crs.get_geod()
        return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in geoms])
    return shapely.area(np.asarray(geoms, dtype=object))


def vectorize(
    labels: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    transform: Affine,
    crs: Any,
    *,
    valid: np.ndarray | None = None,
    instances: np.ndarray | None = None,
    min_area: float = 0.0,
    simplify: float = 0.0,
    attributes: Mapping[str, Any] | None = None,
) -> gpd.GeoDataFrame:
    """Turn a label raster into one polygon per object.

    An object is a 4-connected run of pixels with one label, or, where ``instances`` is
    given, all pixels of one (label, instance) pair (a MultiPolygon when split).

    Args:
        labels: (H, W) ints; 0 is background, k > 0 is ``class_names[k - 1]``.
        scores: (H, W) per-pixel confidence; each polygon gets the mean over its pixels.
        class_names: Names of the labels.
        transform: Pixel → map transform of the arrays.
        crs: CRS of ``transform`` (anything pyproj accepts), or None (pixel space).
        valid: (H, W) bools; pixels outside (NoData, outside the raster) never get a polygon.
        instances: Optional (H, W) instance ids (0 = none).
        min_area: Drop polygons smaller than this (square map units, see ``area``) and, in
            projected or pixel CRSs, fill holes smaller than it.
        simplify: Douglas-Peucker tolerance in map units (0 keeps pixel edges).
        attributes: Extra columns, the same value on every row (query, model...).

    Returns:
        A GeoDataFrame with columns ``label``, ``score``, ``area`` (square map units of
        ``crs``; geodesic square metres when ``crs`` is geographic), ``instance`` when
        ``instances`` is given, then ``attributes``; in ``crs``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or np.shape(scores) != labels.shape:
        raise ValueError(f"labels {labels.shape} and scores {np.shape(scores)} must be equal 2-D")
    labels = labels.astype(np.int32, copy=True)
    labels[labels > len(class_names)] = 0
    labels[labels < 0] = 0
    if valid is not None:
        labels[~np.asarray(valid, dtype=bool)] = 0
    crs_obj = CRS.from_user_input(crs) if crs is not None else None
    comp, comp_label, comp_instance = _components(labels, instances)

    n = len(comp_label)
    counts = np.bincount(comp.ravel(), minlength=n)
    sums = np.bincount(comp.ravel(), weights=np.asarray(scores, np.float64).ravel(), minlength=n)
    mean_score = np.divide(sums, counts, out=np.zeros(n), where=counts > 0)

    if crs_obj is None or not crs_obj.is_geographic:
        # Pixels have one area here, so small objects go before the costly polygon building.
        pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
        small = counts * pixel_area < min_area
        small[0] = False
        if small.any():
            comp[small[comp]] = 0
    ids, geoms = _polygons(comp, transform)
    areas = _areas(geoms, crs_obj)
    keep = [j for j, a in enumerate(areas) if a >= min_area and a > 0]
    ids = [ids[j] for j in keep]
    geoms = [geoms[j] for j in keep]
    areas = areas[keep] if len(keep) else np.zeros(0)
    if min_area > 0 and geoms and (crs_obj is None or not crs_obj.is_geographic):
        geoms = _fill_small_holes(geoms, min_area)
    if simplify > 0 and geoms:
        geoms = list(shapely.simplify(geoms, simplify, preserve_topology=True))

    data: dict[str, Any] = {
        "label": [class_names[comp_label[i] - 1] for i in ids],
        "score": [round(float(mean_score[i]), 4) for i in ids],
        "area": [float(a) for a in areas],
    }
    if instances is not None:
        data["instance"] = [int(comp_instance[i]) for i in ids]
    for key, value in (attributes or {}).items():
        data[key] = [value] * len(ids)
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms, crs=crs_obj), crs=crs_obj)


def reproject(polygons: gpd.GeoDataFrame, crs: Any) -> gpd.GeoDataFrame:
    """Reproject polygons; ``area`` keeps the value measured in the source CRS.

    Args:
        polygons: Result of :func:`vectorize`, with a CRS.
        crs: Target CRS, anything pyproj accepts.

    Returns:
        A new GeoDataFrame in ``crs``.
    """
    if polygons.crs is None:
        raise ValueError("polygons without a CRS cannot be reprojected")
    return polygons.to_crs(CRS.from_user_input(crs))
