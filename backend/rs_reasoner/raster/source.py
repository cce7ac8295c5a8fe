"""Open a raster GDAL can read, with errors that say what to fix."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from rs_reasoner.errors import RasterError

#: Extensions of vector formats people sometimes pass by mistake.
_VECTOR_SUFFIXES = {".shp", ".gpkg", ".geojson", ".json", ".kml", ".gml", ".fgb", ".csv"}

#: Pixel space of rasters without georeferencing, as QGIS shows them: x = column,
#: y = -row (QGIS flips GDAL's default geotransform so images are not upside down).
PIXEL_SPACE_TRANSFORM = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


def _is_local_path(path: str) -> bool:
    """True for plain file paths; False for GDAL virtual paths and connection strings.

    ``/vsicurl/...``, ``https://...`` and ``NETCDF:"file.nc":var`` style names do not
    exist on disk, so existence checks would wrongly refuse them.
    """
    if path.startswith("/vsi") or "://" in path:
        return False
    head, sep, _ = path.partition(":")
    # Driver prefixes (``GTIFF_DIR:``, ``HDF5:``) are upper-case words, unlike ``C:\``.
    return not (sep and len(head) > 1 and head.replace("_", "").isalnum() and head.isupper())


def open_raster(path: str | os.PathLike[str]) -> rasterio.DatasetReader:
    """Open a raster for reading.

    Accepts anything GDAL opens: GeoTIFF, COG, VRT, JPEG2000, ``/vsicurl/`` URLs, driver
    connection strings. The caller closes the dataset.

    Args:
        path: File path or GDAL dataset name.

    Returns:
        The open dataset.

    Raises:
        RasterError: The file does not exist, cannot be read, is not a raster, or has no
            bands.
    """
    name = os.fspath(path)
    if not name.strip():
        raise RasterError(
            "No raster path was given.", "Give the path of a GeoTIFF or another raster."
        )
    local = Path(name) if _is_local_path(name) else None
    if local is not None:
        if not local.exists():
            raise RasterError(
                f"Raster file does not exist: {name}",
                "Check the path; it is resolved on the machine running the backend.",
            )
        if not (local.is_file() or local.is_dir()):
            # Opening a FIFO waits for a writer, a device may never end: never open them.
            raise RasterError(
                f"{name} is not a regular file (a FIFO, socket or device).",
                "Give the path of a raster file.",
            )
        if local.is_file():
            if not os.access(local, os.R_OK):
                raise RasterError(
                    f"Raster file {name} cannot be read: permission denied.",
                    "Give the backend's user read access to the file.",
                )
            if local.stat().st_size == 0:
                raise RasterError(f"Raster file {name} is empty (0 bytes).", "Export it again.")
    try:
        with warnings.catch_warnings():
            # Non-georeferenced rasters are supported (pixel space); no warning needed.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(name)
    except RasterioError as exc:
        reason = str(exc).strip() or type(exc).__name__
        if local is not None and local.is_dir():
            raise RasterError(
                f"{name} is a folder, not a raster GDAL can read.",
                "Give the path of a raster file inside it.",
            ) from None
        if local is not None and local.suffix.lower() in _VECTOR_SUFFIXES:
            hint = "This looks like a vector file; give the raster (GeoTIFF, VRT, ...) instead."
        else:
            hint = "Give a raster GDAL can read (GeoTIFF, COG, VRT, JPEG2000, ...)."
        raise RasterError(
            f"GDAL cannot read {name} as a raster (not a raster, or damaged): {reason}", hint
        ) from None
    if ds.count == 0:
        subdatasets = list(ds.subdatasets)
        ds.close()
        if subdatasets:
            listed = ", ".join(subdatasets[:3]) + (", ..." if len(subdatasets) > 3 else "")
            raise RasterError(
                f"{name} has no raster bands of its own but contains subdatasets.",
                f"Give one of them as the raster, e.g. {listed}",
            )
        raise RasterError(f"{name} has no raster bands.", "Give a raster with at least one band.")
    return ds


def is_georeferenced(ds: rasterio.DatasetReader) -> bool:
    """Whether the raster has a CRS or a geotransform of its own.

    Args:
        ds: The dataset.

    Returns:
        False for plain images (rasterio then reports the identity transform).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return ds.crs is not None or ds.transform != Affine.identity()


def raster_transform(ds: rasterio.DatasetReader) -> Affine:
    """The source grid's affine: the raster's own, or QGIS pixel space without one.

    Args:
        ds: The dataset.

    Returns:
        ``ds.transform``, or :data:`PIXEL_SPACE_TRANSFORM` (x = column, y = -row) for a
        raster without georeferencing, so extents drawn in QGIS and polygons shown there
        line up with the image.
    """
    if not is_georeferenced(ds):
        return PIXEL_SPACE_TRANSFORM
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return ds.transform
