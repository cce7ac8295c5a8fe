"""Builders for small, real GeoTIFFs with known content (test data made by code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.transform import Affine, from_origin
from rasterio.windows import Window

#: A UTM 33N grid with 2 m pixels whose top-left corner is (500000, 4000000).
UTM_TRANSFORM = from_origin(500_000.0, 4_000_000.0, 2.0, 2.0)
UTM_CRS = "EPSG:32633"

#: Albers CONUS as WKT with no EPSG authority (like many real-world custom projections).
CUSTOM_WKT = (
    'PROJCS["Custom Albers",GEOGCS["NAD83",DATUM["North_American_Datum_1983",'
    'SPHEROID["GRS 1980",6378137,298.257222101]],PRIMEM["Greenwich",0],'
    'UNIT["degree",0.0174532925199433]],PROJECTION["Albers_Conic_Equal_Area"],'
    'PARAMETER["latitude_of_center",23],PARAMETER["longitude_of_center",-96],'
    'PARAMETER["standard_parallel_1",29.5],PARAMETER["standard_parallel_2",45.5],'
    'PARAMETER["false_easting",0],PARAMETER["false_northing",0],'
    'UNIT["metre",1]]'
)


def write_geotiff(
    path: Path,
    data: np.ndarray,
    crs: str | None = UTM_CRS,
    transform: Affine | None = UTM_TRANSFORM,
    nodata: float | None = None,
    colorinterp: list[ColorInterp] | None = None,
) -> Path:
    """Write ``data`` (bands, rows, cols) as a tiled GeoTIFF.

    Args:
        path: Output file.
        data: Pixel values; dtype is kept.
        crs: Anything rasterio's CRS accepts, or None for a non-georeferenced raster.
        transform: Affine; None writes no geotransform.
        nodata: NoData value to declare.
        colorinterp: Colour interpretation per band.

    Returns:
        ``path``.
    """
    if data.ndim == 2:
        data = data[None]
    profile = {
        "driver": "GTiff",
        "height": data.shape[1],
        "width": data.shape[2],
        "count": data.shape[0],
        "dtype": data.dtype,
    }
    if crs is not None:
        profile["crs"] = CRS.from_user_input(crs)
    if transform is not None:
        profile["transform"] = transform
    if nodata is not None:
        profile["nodata"] = nodata
    if data.shape[1] >= 256 and data.shape[2] >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if colorinterp is not None:
            dst.colorinterp = colorinterp
    return path


def scene_with_squares(
    height: int = 300,
    width: int = 400,
    squares: list[tuple[int, int, int]] | None = None,
    background: int = 20,
    value: int = 230,
    bands: int = 3,
    dtype: str = "uint8",
) -> np.ndarray:
    """A dark image with bright squares.

    Args:
        height, width: Image size.
        squares: (row, col, size) of each square, top-left corner in pixels.
        background, value: Pixel values outside/inside the squares.
        bands: Number of bands (all equal).
        dtype: Output dtype.

    Returns:
        (bands, height, width) array.
    """
    img = np.full((bands, height, width), background, dtype=dtype)
    for r, c, s in squares or [(50, 60, 40)]:
        img[:, r : r + s, c : c + s] = value
    return img


def neon_crop(shared_data: Path, out: Path, width: int, height: int) -> Path:
    """A ``width`` x ``height`` RGB crop of the NEON 10 cm orthophoto at column 300, row
    200, georeferenced, written to ``out``."""
    with rasterio.open(shared_data / "neon_osbs_rgb_10cm_utm17n.tif") as src:
        window = Window(300, 200, width, height)
        profile = src.profile | {"width": width, "height": height, "count": 3,
                                 "transform": src.window_transform(window)}  # fmt: skip
        profile.pop("photometric", None)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read([1, 2, 3], window=window))
    return out
