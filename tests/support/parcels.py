"""Labelled parcels drawn from the real NEON sample raster (test data made by code)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio import features
from scipy import ndimage

#: Side (pixels) of the cells in which at most one parcel is drawn.
CELL = 64


def cover_masks(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Confident ``tree`` (green) and ``sand`` (bright, not green) pixels of an RGB image.

    Args:
        rgb: (3, H, W) uint8.

    Returns:
        Boolean masks per class, smoothed and opened so they form compact regions.
    """
    x = rgb.astype(np.float32) / 255
    r, g, b = x
    exg = ndimage.uniform_filter((2 * g - r - b) / (x.sum(0) + 1e-6), 9)
    bright = ndimage.uniform_filter(x.mean(0), 9)
    masks = {
        "tree": exg > np.percentile(exg, 75),
        "sand": (bright > np.percentile(bright, 70)) & (exg < np.percentile(exg, 40)),
    }
    return {k: ndimage.binary_opening(m, iterations=2) for k, m in masks.items()}


def neon_parcels(raster: Path, field: str = "cover") -> gpd.GeoDataFrame:
    """Tree and sand parcels on the NEON sample: in each ``CELL`` x ``CELL`` cell, the
    largest confident region of one class (alternating between cells),
    kept two pixels inside the cell so parcels never share a training tile of ``CELL``.

    Args:
        raster: The NEON RGB GeoTIFF.
        field: Name of the class field.

    Returns:
        Parcels in the raster's CRS.
    """
    with rasterio.open(raster) as ds:
        rgb, transform, crs = ds.read([1, 2, 3]), ds.transform, ds.crs
    masks = cover_masks(rgb)
    rows: list[tuple[str, shapely.Geometry]] = []
    h, w = rgb.shape[1:]
    for r0 in range(0, h - CELL + 1, CELL):
        for c0 in range(0, w - CELL + 1, CELL):
            cell = (slice(r0 + 2, r0 + CELL - 2), slice(c0 + 2, c0 + CELL - 2))
            # Alternate the preferred class so both get parcels; fall back to the other.
            order = list(masks)[:: 1 if (r0 // CELL + c0 // CELL) % 2 else -1]
            name = next((k for k in order if masks[k][cell].sum() >= 200), None)
            if name is None:
                continue
            part = np.zeros((h, w), bool)
            part[cell] = masks[name][cell]
            labels, n = ndimage.label(part)
            if n == 0:
                continue
            biggest = 1 + int(np.argmax(ndimage.sum(part, labels, range(1, n + 1))))
            shapes = features.shapes(
                np.ones((h, w), np.uint8), mask=labels == biggest, transform=transform
            )
            poly = shapely.union_all([shapely.geometry.shape(g) for g, _ in shapes])
            if poly.area >= 100 * abs(transform.a * transform.e):
                rows.append((name, poly))
    return gpd.GeoDataFrame({field: [n for n, _ in rows]}, geometry=[g for _, g in rows], crs=crs)


def write_neon_parcels(raster: Path, path: Path, field: str = "cover") -> gpd.GeoDataFrame:
    """Write :func:`neon_parcels` to ``path`` (GeoPackage, GeoJSON, ...) and return them."""
    frame = neon_parcels(raster, field)
    frame.to_file(path)
    return frame


def labelled_scene(raster: Path, labels: Path, field: str, background: str | None = None):
    """Every band of ``raster`` with its parcels rasterised: (raw, valid, label,
    class names, band statistics, band roles)."""
    from rs_reasoner.raster import open_raster
    from rs_reasoner.raster.band_roles import band_roles
    from rs_reasoner.raster.band_stats import BandStats, read_bands
    from rs_reasoner_training.data.parcels import label_raster

    label, parcels = label_raster(raster, labels, field, background=background)
    with open_raster(raster) as ds:
        bands = list(range(1, ds.count + 1))
        raw, valid = read_bands(ds, bands)
        stats, roles = BandStats.from_raster(ds), band_roles(ds, bands)
    return raw, valid, label, parcels.class_names, stats, roles
