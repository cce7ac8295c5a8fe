"""Output files of a batch: one GeoParquet part per unit, the merged seam objects, and an
optional single GeoPackage of everything, all in one CRS.

Layout of the output folder::

    manifest.json                 progress (see rs_reasoner.batch.manifest)
    parts/<unit>.parquet          finished polygons of the unit (output CRS)
    parts/<unit>.pieces.parquet   objects cut by the unit's edges (pixel coordinates)
    seams.parquet                 those objects merged across units (output CRS)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import geopandas as gpd
import pandas as pd
from affine import Affine

from rs_reasoner.atomic import write_atomic
from rs_reasoner.batch import seams

SEAMS_NAME = "seams.parquet"


def part_path(unit_id: str) -> Path:
    """Polygons part of a unit, relative to the output folder."""
    return Path("parts") / f"{unit_id}.parquet"


def pieces_path(unit_id: str) -> Path:
    """Edge pieces of a unit, relative to the output folder."""
    return Path("parts") / f"{unit_id}.pieces.parquet"


def write_part(frame: gpd.GeoDataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a GeoParquet file atomically (a crash never leaves half a part)."""
    return write_atomic(path, lambda f: frame.to_parquet(f, index=False))


def read_parts(folder: Path, parts: Iterable[str]) -> gpd.GeoDataFrame | None:
    """Concatenate part files (None when there are none)."""
    frames = [gpd.read_parquet(folder / p) for p in parts]
    frames = [f for f in frames if len(f)] or frames[:1]
    if not frames:
        return None
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)


def merge_seams(
    folder: Path,
    units_by_source: dict[int, list[str]],
    sources: list,
    output_crs: str,
    options,
    attributes: dict,
) -> gpd.GeoDataFrame:
    """Merge every source's edge pieces and write ``seams.parquet`` in the output CRS.

    Args:
        folder: The output folder.
        units_by_source: Unit ids of each source index.
        sources: The source plans.
        output_crs: WKT of the output CRS ('' for the first source's).
        options: The run's SegmentOptions (min_area, simplify).
        attributes: Columns added to every object.

    Returns:
        The merged objects.
    """
    frames = []
    for index, unit_ids in sorted(units_by_source.items()):
        pieces = read_parts(folder, [str(pieces_path(u)) for u in unit_ids])
        if pieces is None or not len(pieces):
            continue
        src = sources[index]
        merged = seams.merge_pieces(
            pieces,
            Affine(*src.grid_transform),
            src.crs_wkt or None,
            min_area=options.min_area,
            simplify=options.simplify,
            attributes=attributes,
        )
        if output_crs and merged.crs is not None:
            merged = merged.to_crs(output_crs)
        frames.append(merged)
    crs = output_crs or (sources[0].crs_wkt if sources else None) or None
    if frames:
        out = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)
    else:
        columns = ["label", "score", "area", *attributes]
        out = gpd.GeoDataFrame({c: [] for c in columns}, geometry=gpd.GeoSeries([]), crs=crs)
    write_part(out, folder / SEAMS_NAME)
    return out
