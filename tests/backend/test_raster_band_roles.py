"""band_roles: blue/green/red/NIR/SWIR from wavelengths, colour interpretation and names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp as CI

from rs_reasoner.raster import open_raster
from rs_reasoner.raster.band_roles import band_roles, role_from_text, role_from_wavelength
from tests.support.rasters import write_geotiff


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("B04", "red"),
        ("B08 - NIR", "nir"),
        ("S2 B8A", "nir"),
        ("B11", "swir1"),
        ("Near Infrared", "nir"),
        ("near-infrared", "nir"),
        ("SWIR 2", "swir2"),
        ("Red", "red"),
        ("Red edge 1", None),  # not red
        ("B5", None),  # NIR on Landsat 8, red edge on Sentinel-2: not guessed
        ("NDVI 2016-05-01", None),
        ("", None),
    ],
)
def test_role_from_text(text: str, role: str | None) -> None:
    assert role_from_text(text) == role


def test_role_from_wavelength() -> None:
    assert role_from_wavelength(0.665) == "red"  # Sentinel-2 B04
    assert role_from_wavelength(0.842) == "nir"  # B08
    assert role_from_wavelength(0.705) is None  # red edge
    assert role_from_wavelength(1.61) == "swir1"


def test_real_rasters(shared_data: Path) -> None:
    with open_raster(shared_data / "landsat_rgb_utm18n.tif") as ds:
        assert band_roles(ds, [1, 2, 3]) == {"red": 0, "green": 1, "blue": 2}
        assert band_roles(ds, [3, 2, 1]) == {"blue": 0, "green": 1, "red": 2}  # input order
    with open_raster(shared_data / "slovenia" / "slovenia_ndvi_68dates_utm33n.tif") as ds:
        assert band_roles(ds, list(range(1, 69))) == {}  # NDVI dates have no spectral role
    with open_raster(shared_data / "spacenet_atlanta_pan_utm16n.tif") as ds:
        assert band_roles(ds, [1]) == {}


def test_sentinel2_style_raster(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "s2.tif", np.zeros((5, 8, 8), np.uint16),
                         colorinterp=[CI.undefined] * 5)  # fmt: skip
    with rasterio.open(path, "r+") as ds:
        for band, name in enumerate(["B02", "B03", "B04", "B05", "B08"], start=1):
            ds.set_band_description(band, name)
        # A wavelength beats the name: band 4 (B05) is declared at 0.865 um here.
        ds.update_tags(4, ns="IMAGERY", CENTRAL_WAVELENGTH_UM="0.865")
    with open_raster(path) as ds:
        roles = band_roles(ds, [1, 2, 3, 4, 5])
    # Band 5 (B08) also names NIR; the first band claiming a role keeps it.
    assert roles == {"blue": 0, "green": 1, "red": 2, "nir": 3}
