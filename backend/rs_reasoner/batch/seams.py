"""Objects cut by unit edges: set aside per unit, merged once across units.

A unit vectorises only the objects (4-connected runs of one label, as
:func:`rs_reasoner.vector.vectorize` defines them) that do not touch its edges; those are
final. Objects touching an edge may continue in the next unit, so the unit keeps them as
*pieces*: pixel-exact polygons in integer working-grid coordinates with their pixel count
and score sum. :func:`merge_pieces` joins pieces of one class that share an edge (corner
contact does not join, as in 4-connectivity), then finishes each object as ``vectorize``
does (mean score, area, ``min_area``, small holes, simplification). Integer coordinates
make the union exact, so merged objects equal the single-extent run's polygons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rs_reasoner.vector.vectorize import _areas, _fill_small_holes

_FOUR = ndimage.generate_binary_structure(2, 1)

#: Columns of a pieces table (plus geometry, in working-grid pixel coordinates).
PIECE_COLUMNS = ("source", "label", "pixels", "score_sum")


def split_edge_objects(
    labels: np.ndarray, scores: np.ndarray, class_names: Sequence[str], window: Sequence[int],
    source: int,
) -> tuple[np.ndarray, gpd.GeoDataFrame]:
    """Take the objects touching the unit's edges out of its label map.

    Args:
        labels: (H, W) labels of the unit, 0 where nothing (threshold and NoData applied).
        scores: (H, W) scores.
        class_names: Names of labels 1..n.
        window: The unit's (row0, col0, row1, col1) on the working grid.
        source: Index of the unit's source (pieces of different sources never join).

    Returns:
        (labels with edge objects set to 0, their pieces table).
    """
    row0, col0 = int(window[0]), int(window[1])
    edge_ids = np.zeros(labels.shape, np.int32)
    piece_label: list[str] = []
    next_id = 1
    for k in np.unique(labels[labels > 0]):
        ids, n = ndimage.label(labels == k, structure=_FOUR)
        border = np.unique(np.concatenate([ids[0], ids[-1], ids[:, 0], ids[:, -1]]))
        border = border[border > 0]
        if not len(border):
            continue
        lut = np.zeros(n + 1, np.int32)
        lut[border] = np.arange(next_id, next_id + len(border), dtype=np.int32)
        mapped = lut[ids]
        edge_ids = np.where(mapped > 0, mapped, edge_ids)
        piece_label += [class_names[int(k) - 1]] * len(border)
        next_id += len(border)
    interior = np.where(edge_ids > 0, 0, labels)
    n = next_id
    counts = np.bincount(edge_ids.ravel(), minlength=n)
    sums = np.bincount(edge_ids.ravel(), weights=scores.astype(np.float64).ravel(), minlength=n)
    parts: dict[int, list[Any]] = {}
    pixel_grid = Affine(1.0, 0.0, float(col0), 0.0, 1.0, float(row0))
    for geom, value in rasterio.features.shapes(
        edge_ids, mask=edge_ids > 0, connectivity=4, transform=pixel_grid
    ):
        parts.setdefault(int(value), []).append(shapely.geometry.shape(geom))
    ids = sorted(parts)
    geoms = [shapely.union_all(parts[i]) for i in ids]
    table = gpd.GeoDataFrame(
        {
            "source": [source] * len(ids),
            "label": [piece_label[i - 1] for i in ids],
            "pixels": [int(counts[i]) for i in ids],
            "score_sum": [float(sums[i]) for i in ids],
        },
        geometry=gpd.GeoSeries(geoms, crs=None),
    )
    return interior, table


def _join_groups(geoms: np.ndarray) -> np.ndarray:
    """Group index of each piece: pieces sharing an edge (not just a corner) join."""
    n = len(geoms)
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    if len(left):
        shared = shapely.length(shapely.intersection(geoms[left], geoms[right])) > 0
        left, right = left[shared], right[shared]
    graph = coo_matrix((np.ones(len(left)), (left, right)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def merge_pieces(
    pieces: gpd.GeoDataFrame,
    grid_transform: Affine,
    crs: Any,
    *,
    min_area: float = 0.0,
    simplify: float = 0.0,
    attributes: Mapping[str, Any] | None = None,
) -> gpd.GeoDataFrame:
    """Join the pieces of one source into objects and finish them like ``vectorize``.

    Args:
        pieces: Pieces of one source (see :func:`split_edge_objects`), from all its units.
        grid_transform: The source's working-grid affine.
        crs: The source's CRS (anything pyproj accepts) or None.
        min_area, simplify, attributes: As for :func:`rs_reasoner.vector.vectorize`.

    Returns:
        One row per object: ``label``, ``score``, ``area``, then ``attributes``; in ``crs``.
    """
    crs_obj = CRS.from_user_input(crs) if crs else None
    rows: list[tuple[str, float, Any]] = []
    for label, group in pieces.groupby("label", sort=True):
        geoms = np.asarray(group.geometry.values, dtype=object)
        comp = _join_groups(geoms)
        pixels = np.bincount(comp, weights=group["pixels"].to_numpy(np.float64))
        sums = np.bincount(comp, weights=group["score_sum"].to_numpy(np.float64))
        for c in range(len(pixels)):
            merged = shapely.union_all(geoms[comp == c])
            rows.append((str(label), float(sums[c] / pixels[c]), merged))
    t = grid_transform
    geoms = [
        shapely.transform(g, lambda xy: np.column_stack([
            t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f,
        ]))
        for _, _, g in rows
    ]  # fmt: skip
    areas = _areas(geoms, crs_obj)
    keep = [j for j, a in enumerate(areas) if a >= min_area and a > 0]
    geoms = [geoms[j] for j in keep]
    if min_area > 0 and geoms and (crs_obj is None or not crs_obj.is_geographic):
        geoms = _fill_small_holes(geoms, min_area)
    if simplify > 0 and geoms:
        geoms = list(shapely.simplify(geoms, simplify, preserve_topology=True))
    data: dict[str, Any] = {
        "label": [rows[j][0] for j in keep],
        "score": [round(rows[j][1], 4) for j in keep],
        "area": [float(areas[j]) for j in keep],
    }
    for key, value in (attributes or {}).items():
        data[key] = [value] * len(keep)
    return gpd.GeoDataFrame(
        pd.DataFrame(data), geometry=gpd.GeoSeries(geoms, crs=crs_obj), crs=crs_obj
    )
