"""Write polygons to GeoPackage, Shapefile, GeoJSON or FlatGeobuf, atomically; GeoJSON dicts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
from pyproj import CRS

from rs_reasoner.atomic import (
    JOURNAL,
    check_writable,
    fsync_file,
    make_staging_dir,
    publish_file_set,
    sweep_litter,
)
from rs_reasoner.errors import OutputError

#: Output extensions → OGR drivers.
DRIVERS = {
    ".gpkg": "GPKG",
    ".shp": "ESRI Shapefile",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".fgb": "FlatGeobuf",
}
#: Files a shapefile is made of, and the spatial indexes tools put beside it: replaced or
#: removed together (an old .prj or .qix would misplace or hide the new features).
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")
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
        OutputError: Unsupported extension, a folder in the way, or no way to write there
            (tried, not guessed from permission bits).
    """
    out = Path(path)
    driver_for(out)
    if out.is_dir():
        raise OutputError(f"'{out}' is a folder.", "Give a file name such as result.gpkg.")
    return check_writable(out)


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


def _verify(path: Path, expected: int) -> None:
    """Read back what GDAL wrote: a file with fewer features is never published."""
    found = pyogrio.read_info(path)["features"]
    if found != expected:
        raise OutputError(f"GDAL wrote {found} of {expected} features.")


def write_vector(polygons: gpd.GeoDataFrame, path: str | os.PathLike[str]) -> Path:
    """Write polygons atomically: an existing output is replaced only by a complete one.

    The layer is written and read back in a staging folder beside the output, then moved
    in with one rename, or for a shapefile as one set (:func:`~rs_reasoner.atomic.
    publish_file_set`). Litter of writers killed earlier in that folder is swept first.

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
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the folder of '{out}': {exc.strerror or exc}.") from None
    sweep_litter(out.parent)
    gdf = _for_shapefile(polygons) if driver == "ESRI Shapefile" else polygons
    staging = make_staging_dir(out.parent)
    try:
        tmp = staging / out.name
        try:
            _write(gdf, tmp, driver)
            _verify(tmp, len(gdf))
        except Exception as exc:  # GDAL errors come in several types
            raise OutputError(f"Could not write '{out}': {exc}") from exc
        try:
            if driver == "ESRI Shapefile":
                stale = [out.with_suffix(ext).name for ext in SHAPEFILE_PARTS]
                publish_file_set(staging, out.name, obsolete=stale)
            else:
                fsync_file(tmp)
                os.replace(tmp, out)
        except OSError as exc:
            raise OutputError(
                f"Could not replace '{out}': {exc.strerror or exc}.",
                "Check the folder's permissions; the next write there completes the swap.",
            ) from None
    finally:
        if not (staging / JOURNAL).exists():  # a journal means: finish the swap, not undo
            shutil.rmtree(staging, ignore_errors=True)
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
