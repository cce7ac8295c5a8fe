"""Write polygons to GeoPackage, Shapefile, GeoJSON or FlatGeobuf, atomically; GeoJSON dicts."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
from pyproj import CRS

from rs_reasoner.errors import OutputError

#: Output extensions → OGR drivers.
DRIVERS = {
    ".gpkg": "GPKG",
    ".shp": "ESRI Shapefile",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".fgb": "FlatGeobuf",
}
#: Files a shapefile is made of (written and replaced together).
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
#: dBase limits: field names of 10 characters, strings of 254 bytes.
SHP_FIELD_NAME = 10
SHP_STRING_BYTES = 254


def driver_for(path: str | os.PathLike[str]) -> str:
    """The OGR driver for an output path, from its extension.

    Raises:
        OutputError: For an unsupported extension.
    """
    suffix = Path(path).suffix.lower()
    try:
        return DRIVERS[suffix]
    except KeyError:
        raise OutputError(
            f"Cannot write '{path}': unsupported extension '{suffix or '(none)'}'.",
            f"Use one of {', '.join(sorted(DRIVERS))} (e.g. result.gpkg or result.shp).",
        ) from None


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Check before a job runs that its output can be written (so no work is lost after).

    Args:
        path: The output file; missing parent folders are created on write.

    Returns:
        The path.

    Raises:
        OutputError: Unsupported extension, a folder in the way, or no write permission.
    """
    out = Path(path)
    driver_for(out)
    if out.is_dir():
        raise OutputError(f"'{out}' is a folder.", "Give a file name such as result.gpkg.")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"Cannot create a folder for '{out}': '{parent}' is a file.")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"No permission to write in '{parent}'.", "Choose another folder.")
    return out


def _truncate_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def _for_shapefile(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Fit dBase limits: short unique field names, strings cut to 254 bytes."""
    out = gdf.copy()
    names: dict[str, str] = {}
    used: set[str] = set()
    for col in out.columns:
        if col == out.geometry.name:
            continue
        name = col[:SHP_FIELD_NAME]
        n = 1
        while name.lower() in used:
            suffix = f"_{n}"
            name = col[: SHP_FIELD_NAME - len(suffix)] + suffix
            n += 1
        used.add(name.lower())
        names[col] = name
        if pd.api.types.is_object_dtype(out[col]) or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(
                lambda v: _truncate_bytes(v, SHP_STRING_BYTES) if isinstance(v, str) else v
            )
    return out.rename(columns=names)


def _write(gdf: gpd.GeoDataFrame, path: Path, driver: str) -> None:
    kwargs: dict[str, Any] = {"driver": driver, "engine": "pyogrio"}
    if driver == "ESRI Shapefile":
        kwargs["encoding"] = "UTF-8"  # GDAL writes a .cpg so QGIS reads accents right
    if len(gdf) == 0:
        kwargs["geometry_type"] = "Polygon"
    gdf.to_file(path, **kwargs)


def write_vector(polygons: gpd.GeoDataFrame, path: str | os.PathLike[str]) -> Path:
    """Write polygons atomically: an existing file is replaced only by a complete one.

    Args:
        polygons: The layer (any CRS, possibly empty).
        path: Output file; the driver follows the extension (:data:`DRIVERS`).

    Returns:
        The path written.

    Raises:
        OutputError: When the file cannot be written.
    """
    out = check_output_path(path)
    driver = driver_for(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    gdf = _for_shapefile(polygons) if driver == "ESRI Shapefile" else polygons
    tmp_dir = Path(tempfile.mkdtemp(prefix=".rs-reasoner-", dir=out.parent))
    try:
        tmp = tmp_dir / f"{uuid.uuid4().hex}{out.suffix}"
        try:
            _write(gdf, tmp, driver)
        except Exception as exc:  # GDAL errors come in several types
            raise OutputError(f"Could not write '{out}': {exc}") from exc
        if driver == "ESRI Shapefile":
            for ext in SHAPEFILE_PARTS:  # stale sidecars of an older file would mislead QGIS
                old = out.with_suffix(ext)
                if old.exists() and not tmp.with_suffix(ext).exists():
                    old.unlink()
            for part in tmp_dir.iterdir():
                os.replace(part, out.with_suffix(part.suffix))
        else:
            os.replace(tmp, out)
    finally:
        for part in tmp_dir.iterdir():
            part.unlink()
        tmp_dir.rmdir()
    return out


def crs_member(crs: Any) -> dict[str, Any] | None:
    """A GeoJSON 2008 ``crs`` member naming ``crs`` (an OGC URN, or WKT without an EPSG code)."""
    if crs is None:
        return None
    crs = CRS.from_user_input(crs)
    auth = crs.to_authority(min_confidence=90)
    if auth is not None:
        name = f"urn:ogc:def:crs:{auth[0]}::{auth[1]}"
        return {"type": "name", "properties": {"name": name}}
    return {"type": "name", "properties": {"name": crs.to_wkt()}}


def to_geojson_dict(polygons: gpd.GeoDataFrame) -> dict[str, Any]:
    """A GeoJSON FeatureCollection in the layer's own CRS, named by a ``crs`` member.

    Coordinates stay in the polygons' CRS (not RFC 7946 WGS 84) so nothing is reprojected
    twice; the plugin reads the ``crs`` member.

    Args:
        polygons: The layer.

    Returns:
        A JSON-serialisable dict.
    """
    frame = polygons.copy()
    for col in frame.columns:
        if col != frame.geometry.name and pd.api.types.is_float_dtype(frame[col]):
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    collection = json.loads(frame.to_json(drop_id=True, na="null"))
    member = crs_member(polygons.crs)
    if member is not None:
        collection["crs"] = member
    return collection
