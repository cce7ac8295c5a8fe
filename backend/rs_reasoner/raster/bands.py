"""Which bands become the R, G, B of the image a model sees."""

from __future__ import annotations

import rasterio
from rasterio.enums import ColorInterp

from rs_reasoner.errors import InvalidRequestError

_RGB = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)


def select_bands(ds: rasterio.DatasetReader, bands: list[int] | None = None) -> list[int]:
    """Three 1-based band indexes to read as R, G, B.

    Args:
        ds: The dataset.
        bands: 1 or 3 band numbers chosen by the user, or None for the default: the bands
            whose colour interpretation is red, green, blue (in that order); else the
            first three bands that are not alpha; else the first band replicated (so a
            grey + alpha raster is read as grey).

    Returns:
        Three band indexes; a single band is repeated.

    Raises:
        InvalidRequestError: Not 1 or 3 bands, or a band number the raster lacks.
    """
    count = ds.count
    if bands is not None:
        if len(bands) not in (1, 3):
            raise InvalidRequestError(
                f"Give 1 or 3 bands, not {len(bands)} ({bands}).",
                "One band is shown as grey; three are used as red, green, blue.",
            )
        bad = [b for b in bands if not 1 <= b <= count]
        if bad:
            raise InvalidRequestError(
                f"Band(s) {bad} do not exist: the raster has {count} band(s).",
                f"Choose band numbers between 1 and {count}.",
            )
        return [int(bands[0])] * 3 if len(bands) == 1 else [int(b) for b in bands]
    interp = list(ds.colorinterp)
    if all(c in interp for c in _RGB):
        return [interp.index(c) + 1 for c in _RGB]
    # Alpha is a mask, not imagery; GDAL already applies it through the band masks.
    colour = [i + 1 for i, c in enumerate(interp) if c is not ColorInterp.alpha] or [1]
    if len(colour) >= 3:
        return colour[:3]
    return [colour[0]] * 3
