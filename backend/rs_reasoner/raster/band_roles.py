"""Which bands are blue, green, red, near infrared... so spectral indices can be computed.

A band's role is read, in this order of trust, from its central wavelength (GDAL's
``IMAGERY`` metadata ``CENTRAL_WAVELENGTH_UM``), its colour interpretation (red, green,
blue) and its description: words (``"red"``, ``"NIR"``, ``"near infrared"``, ``"SWIR 1"``)
or Sentinel-2 band codes written with two digits (``"B04"``, ``"B08"``, ``"B8A"``).
One-digit codes (``"B5"``) are ignored: band 5 is near infrared on Landsat 8 but red edge
on Sentinel-2, and a wrong guess would make every index wrong. A role claimed by two
bands goes to the first.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

ROLES = ("blue", "green", "red", "nir", "swir1", "swir2")

#: Central wavelength ranges in micrometres (covering Sentinel-2, Landsat 8/9, Planet).
_WAVELENGTHS: tuple[tuple[str, float, float], ...] = (
    ("blue", 0.43, 0.52),
    ("green", 0.52, 0.60),
    ("red", 0.62, 0.69),
    ("nir", 0.76, 0.90),
    ("swir1", 1.50, 1.80),
    ("swir2", 2.00, 2.40),
)

_S2_CODES = {"b02": "blue", "b03": "green", "b04": "red", "b08": "nir", "b8a": "nir",
             "b11": "swir1", "b12": "swir2"}  # fmt: skip

_WORDS: tuple[tuple[str, str], ...] = (
    (r"\b(nir|near[ -]?infra-?red)\b", "nir"),
    (r"\bswir[ _-]?1\b", "swir1"),
    (r"\bswir[ _-]?2\b", "swir2"),
    (r"\bred\b", "red"),
    (r"\bgreen\b", "green"),
    (r"\bblue\b", "blue"),
)

_COLOURS = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue"}


def role_from_text(text: str) -> str | None:
    """Role named by a band description, or None.

    >>> role_from_text("B08 (NIR)"), role_from_text("Red"), role_from_text("NDVI 2016-05")
    ('nir', 'red', None)
    """
    low = text.strip().lower()
    for token in re.findall(r"\bb\d[\da]\b", low):
        if token in _S2_CODES:
            return _S2_CODES[token]
    if "red edge" in low or "rededge" in low:
        return None  # "red edge" is not red
    for pattern, role in _WORDS:
        if re.search(pattern, low):
            return role
    return None


def role_from_wavelength(micrometres: float) -> str | None:
    """Role of a band centred at this wavelength, or None (e.g. red edge, thermal)."""
    for role, lo, hi in _WAVELENGTHS:
        if lo <= micrometres < hi:
            return role
    return None


def band_roles(ds: rasterio.DatasetReader, bands: Sequence[int]) -> dict[str, int]:
    """Roles of a raster's bands.

    Args:
        ds: The raster.
        bands: 1-based band numbers, in the model's input order.

    Returns:
        {role: position in ``bands``} for the roles found (possibly none).
    """
    interp = list(ds.colorinterp)
    found: dict[str, int] = {}
    for pos, band in enumerate(bands):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            imagery = ds.tags(band, ns="IMAGERY")
        role = None
        wavelength = imagery.get("CENTRAL_WAVELENGTH_UM")
        if wavelength is not None:
            try:
                role = role_from_wavelength(float(wavelength))
            except ValueError:
                role = None
        if role is None:
            role = _COLOURS.get(interp[band - 1])
        if role is None:
            role = role_from_text(ds.descriptions[band - 1] or "")
        if role is not None and role not in found:
            found[role] = pos
    return found


__all__ = ["ROLES", "band_roles", "role_from_text", "role_from_wavelength"]
