"""Cutting each source into work units on the tile lattice.

A unit is a window of a source's working grid whose edges lie on the tile lattice of
:mod:`rs_reasoner.tiling` (multiples of the tile stride from working pixel (0, 0)), clipped
to the extent. So the tiles a unit plans are exactly the tiles a single-extent run plans
there, and a unit's label map equals that run's label map over the unit. The contrast
stretch is computed once per source over its whole extent and shared by all its units
(a stretch per unit would change pixel values from one unit to the next).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import shapely
from pyproj import CRS
from shapely.geometry import box

from rs_reasoner.errors import ExtentError
from rs_reasoner.pipeline import open_dataset
from rs_reasoner.raster import ExtentReader
from rs_reasoner.schemas import Extent, SegmentOptions

#: Default unit edge, in tiles: big enough that per-unit overhead is small, small enough
#: that a lost unit costs little.
UNIT_TILES = 4

Window = tuple[int, int, int, int]


@dataclass
class SourcePlan:
    """What every unit of one source shares.

    Attributes:
        path: The raster (or mosaic VRT) read.
        crs_wkt: Its CRS as WKT ('' without one).
        grid_transform: Affine (6 numbers) of its working grid.
        scale: Source pixels per working pixel.
        bands: The three bands read as R, G, B, or (``raw``) the model's own bands.
        lo, hi: The shared stretch (unused for raw reads).
        window: The extent on the working grid.
        pixel_area_m2: Ground area of one working pixel in m² (None: not georeferenced).
        raw: Read raw band values (models trained on normalised bands scale them with
            their own statistics) instead of a stretched 8-bit image.
    """

    path: str
    crs_wkt: str
    grid_transform: list[float]
    scale: float
    bands: list[int]
    lo: list[float]
    hi: list[float]
    window: list[int]
    pixel_area_m2: float | None
    raw: bool = False


def _pixel_area_m2(reader: ExtentReader) -> float | None:
    crs = reader.crs
    t = reader.grid_transform
    area = abs(t.a * t.e - t.b * t.d)
    if crs is None:
        return None
    pcrs = CRS.from_wkt(crs.to_wkt())
    if pcrs.is_geographic:
        # Geodesic area of the extent's footprint shared out over its pixels.
        from pyproj import Geod

        r0, c0, r1, c1 = reader.window
        x0, y0 = reader.grid_transform @ (c0, r0)
        x1, y1 = reader.grid_transform @ (c1, r1)
        geod = pcrs.get_geod() or Geod(ellps="WGS84")
        total, _ = geod.geometry_area_perimeter(box(x0, y0, x1, y1))
        return abs(total) / max(1, (r1 - r0) * (c1 - c0))
    factor = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else 1.0
    return area * factor * factor


def plan_source(
    path: str,
    options: SegmentOptions,
    area: Any | None,
    unit_tiles: int = UNIT_TILES,
    bands: list[int] | None = None,
    raw: bool = False,
) -> tuple[SourcePlan, list[Window]]:
    """Plan one source: its shared reading settings and its unit windows.

    Args:
        path: The raster.
        options: The run's options (bands, resolution, tile size, overlap).
        area: A shapely geometry in the raster's CRS restricting the batch, or None.
        unit_tiles: Unit edge in tiles (strides).
        bands: The bands to read (None: ``options.bands``); a raw-band model's own bands.
        raw: Read raw values for a model trained on raw bands (no stretch).

    Returns:
        The plan and the unit windows (row-major), or no windows when ``area`` misses it.
    """
    if unit_tiles < 1:
        raise ExtentError(f"Units of {unit_tiles} tiles are empty.", "Give at least 1.")
    extent = None
    if area is not None:
        xmin, ymin, xmax, ymax = area.bounds
        extent = Extent(xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax)
    with open_dataset(path) as ds:
        try:
            reader = ExtentReader.open(
                ds, extent, options.bands if bands is None else bands, options.resolution,
                raw=raw,
            )  # fmt: skip
        except ExtentError:
            if area is not None:  # the area misses this source
                return _empty_plan(path), []
            raise
        plan = SourcePlan(
            path=path,
            crs_wkt=ds.crs.to_wkt() if ds.crs else "",
            grid_transform=list(reader.grid_transform)[:6],
            scale=reader.scale,
            bands=reader.bands,
            lo=[float(v) for v in reader.lo],
            hi=[float(v) for v in reader.hi],
            window=list(reader.window),
            pixel_area_m2=_pixel_area_m2(reader),
            raw=raw,
        )
        t = reader.grid_transform
    step = unit_tiles * (options.tile_size - 2 * options.overlap)
    row0, col0, row1, col1 = plan.window
    windows = []
    for r in range(math.floor(row0 / step) * step, row1, step):
        for c in range(math.floor(col0 / step) * step, col1, step):
            w = (max(r, row0), max(c, col0), min(r + step, row1), min(c + step, col1))
            if area is not None:
                x0, y0 = t @ (w[1], w[0])
                x1, y1 = t @ (w[3], w[2])
                if not shapely.intersects(area, box(min(x0, x1), min(y0, y1),
                                                    max(x0, x1), max(y0, y1))):
                    continue
            windows.append(w)
    return plan, windows


def _empty_plan(path: str) -> SourcePlan:
    return SourcePlan(path, "", [1, 0, 0, 0, 1, 0], 1.0, [1, 2, 3], [0] * 3, [255] * 3,
                      [0, 0, 0, 0], None)  # fmt: skip
