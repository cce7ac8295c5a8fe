"""Raster access: opening, extent windows in any CRS, bands, stretch, working-grid reads."""

from rs_reasoner.raster.bands import select_bands
from rs_reasoner.raster.extent_window import (
    crs_label,
    extent_to_window,
    raster_bounds,
    working_shape,
)
from rs_reasoner.raster.reader import ExtentReader, source_pixel_size
from rs_reasoner.raster.source import (
    PIXEL_SPACE_TRANSFORM,
    is_georeferenced,
    open_raster,
    raster_transform,
)
from rs_reasoner.raster.stretch import apply_stretch, stretch_params

__all__ = [
    "PIXEL_SPACE_TRANSFORM",
    "ExtentReader",
    "apply_stretch",
    "crs_label",
    "extent_to_window",
    "is_georeferenced",
    "open_raster",
    "raster_bounds",
    "raster_transform",
    "select_bands",
    "source_pixel_size",
    "stretch_params",
    "working_shape",
]
