"""From an extent in any CRS to a window of the raster's working grid.

The working grid is the source grid scaled by ``scale`` source pixels per working pixel,
anchored at the raster origin: working pixel (r, c) covers source pixels
``[r*scale, (r+1)*scale)``. Windows are ``(row0, col0, row1, col1)``, end-exclusive.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import rasterio
from pyproj import CRS as ProjCRS
from pyproj.exceptions import CRSError
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform_bounds

from rs_reasoner.errors import ExtentError
from rs_reasoner.raster.source import is_georeferenced, raster_transform
from rs_reasoner.schemas import Extent

#: Tolerance (working pixels) so that a coordinate on a pixel edge, give or take float
#: noise, does not pull in the neighbouring pixel.
_EDGE_EPS = 1e-6

Bounds = tuple[float, float, float, float]


def working_shape(ds: rasterio.DatasetReader, scale: float = 1.0) -> tuple[int, int]:
    """Size of the raster on the working grid.

    Args:
        ds: The raster.
        scale: Source pixels per working pixel.

    Returns:
        (rows, cols); a last, partly covered working pixel counts.
    """
    return (
        max(1, math.ceil(ds.height / scale - _EDGE_EPS)),
        max(1, math.ceil(ds.width / scale - _EDGE_EPS)),
    )


def crs_label(crs: CRS | ProjCRS | None) -> str:
    """A short name for messages: ``EPSG:32633``, or the name of a custom CRS.

    Args:
        crs: A rasterio or pyproj CRS, or None.

    Returns:
        The label.
    """
    if crs is None:
        return "pixel space (no CRS)"
    proj = crs if isinstance(crs, ProjCRS) else ProjCRS.from_wkt(crs.to_wkt())
    auth = proj.to_authority(min_confidence=100)
    return f"{auth[0]}:{auth[1]}" if auth else f"custom CRS '{proj.name}'"


def parse_crs(text: str) -> ProjCRS:
    """Parse a user-given CRS (EPSG code, WKT, PROJ string, ...).

    Args:
        text: The CRS as given.

    Returns:
        The pyproj CRS.

    Raises:
        ExtentError: ``text`` is not a CRS.
    """
    try:
        return ProjCRS.from_user_input(text)
    except CRSError:
        raise ExtentError(
            f"Extent CRS {text!r} is not a coordinate reference system (CRS) PROJ knows.",
            "Use e.g. 'EPSG:4326', 'EPSG:32633', a WKT string or a PROJ string.",
        ) from None


def raster_bounds(ds: rasterio.DatasetReader) -> Bounds:
    """(xmin, ymin, xmax, ymax) of the raster in its own coordinates (any rotation).

    Args:
        ds: The raster.

    Returns:
        The bounding box of its four corners.
    """
    t = raster_transform(ds)
    corners = [t @ (c, r) for c in (0, ds.width) for r in (0, ds.height)]
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    return min(xs), min(ys), max(xs), max(ys)


def _fmt(b: Bounds) -> str:
    return "(" + ", ".join(f"{v:.10g}" for v in b) + ")"


def _to_raster_crs(ds: rasterio.DatasetReader, extent: Extent) -> Bounds:
    """The extent's bounds in the raster's coordinates."""
    bounds: Bounds = (extent.xmin, extent.ymin, extent.xmax, extent.ymax)
    if extent.crs is None:
        return bounds
    src = parse_crs(extent.crs)
    if ds.crs is None:
        gcps = ""
        if ds.gcps[0]:
            gcps = "; it has ground control points only, so warp it first (gdalwarp)"
        raise ExtentError(
            f"The extent is in {crs_label(src)}, but the raster has no CRS{gcps}.",
            "Give the extent without a CRS, in the raster's own coordinates (pixel space "
            "for plain images: x = column, y = -row, as QGIS shows them), or georeference "
            "the raster.",
        )
    dst = ProjCRS.from_wkt(ds.crs.to_wkt())
    if src.equals(dst, ignore_axis_order=True):
        return bounds  # no round trip through PROJ: keeps pixel-exact extents exact
    try:
        # Densified edges: a straight edge in one CRS is curved in another.
        out = transform_bounds(CRS.from_wkt(src.to_wkt()), ds.crs, *bounds, densify_pts=21)
    except Exception as exc:  # noqa: BLE001 - GDAL/PROJ raise many error types
        raise ExtentError(
            f"The extent {_fmt(bounds)} cannot be transformed from {crs_label(src)} to the "
            f"raster's {crs_label(ds.crs)}: {exc}",
            "Check the extent's coordinates and that its CRS is the right one.",
        ) from None
    if not np.all(np.isfinite(out)):
        raise ExtentError(
            f"The extent {_fmt(bounds)} in {crs_label(src)} lies where it cannot be "
            f"transformed to the raster's {crs_label(ds.crs)}.",
            "Check the extent's coordinates and that its CRS is the right one.",
        )
    if out[0] > out[2]:
        raise ExtentError(
            "The extent crosses the antimeridian in the raster's CRS.",
            "Split it into parts on each side of longitude 180.",
        )
    return tuple(float(v) for v in out)  # type: ignore[return-value]


def _outside_message(ds: rasterio.DatasetReader, extent: Extent, bounds: Bounds) -> ExtentError:
    rb = raster_bounds(ds)
    msg = (
        f"The extent {_fmt(bounds)} lies outside the raster, whose bounds are {_fmt(rb)} in "
        f"{crs_label(ds.crs)}"
    )
    if extent.crs is not None and ds.crs is not None:
        src = parse_crs(extent.crs)
        try:
            there = transform_bounds(ds.crs, CRS.from_wkt(src.to_wkt()), *rb, densify_pts=21)
            msg += f", or {_fmt(there)} in {crs_label(src)}"
        except Exception:  # noqa: BLE001 - only a courtesy in an error message
            pass
    hint = "Pick an extent that overlaps the raster, and check its CRS."
    if not is_georeferenced(ds):
        hint = (
            "The raster has no georeferencing: give the extent in pixel space as QGIS shows "
            f"it, x = column 0..{ds.width}, y = -row {-ds.height}..0."
        )
    return ExtentError(msg + ".", hint)


def extent_to_window(
    ds: rasterio.DatasetReader, extent: Extent | None, scale: float = 1.0
) -> tuple[int, int, int, int]:
    """The working-grid window covering an extent.

    Args:
        ds: The raster.
        extent: The area; any CRS pyproj understands (its bounds are transformed with
            densified edges); ``crs`` None means the raster's own coordinates (pixel
            space, x = column and y = -row, for rasters without georeferencing).
            None means the whole raster.
        scale: Source pixels per working pixel (1 = native resolution).

    Returns:
        (row0, col0, row1, col1) on the working grid, rounded outwards and clipped to the
        raster.

    Raises:
        ExtentError: The CRS is not one, the raster has no CRS but the extent does, or
            the extent does not overlap the raster.
    """
    rows, cols = working_shape(ds, scale)
    if extent is None:
        return 0, 0, rows, cols
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        bounds = _to_raster_crs(ds, extent)
        xmin, ymin, xmax, ymax = bounds
        # All four corners through the inverse affine: no assumption about the signs of
        # the pixel sizes (south-up) or about rotation.
        inverse = ~raster_transform(ds)
        pts = [inverse @ (x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
    cs = [p[0] / scale for p in pts]
    rs = [p[1] / scale for p in pts]
    # Work in working pixels; the raster's own edge is at height/scale, width/scale.
    h, w = ds.height / scale, ds.width / scale
    if (
        max(cs) <= _EDGE_EPS
        or max(rs) <= _EDGE_EPS
        or min(cs) >= w - _EDGE_EPS
        or min(rs) >= h - _EDGE_EPS
    ):
        raise _outside_message(ds, extent, bounds)
    row0 = max(0, math.floor(min(rs) + _EDGE_EPS))
    col0 = max(0, math.floor(min(cs) + _EDGE_EPS))
    row1 = min(rows, math.ceil(max(rs) - _EDGE_EPS))
    col1 = min(cols, math.ceil(max(cs) - _EDGE_EPS))
    if row1 <= row0 or col1 <= col0:
        raise ExtentError(
            f"The extent {_fmt(bounds)} is empty: it covers no pixel of the raster.",
            "Pick a larger extent that overlaps the raster.",
        )
    return row0, col0, row1, col1
