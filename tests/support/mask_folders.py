"""Image + mask folders cut from the real Dubai sample (test data made by code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image

#: The Dubai masks' colours as a class table file (Unlabeled ignored).
DUBAI_CLASS_TABLE = """colour,name
#3C1098,Building
#8429F6,Land
#6EC1E4,Road
#FEDD3A,Vegetation
#E2A929,Water
#9B9B9B,-
"""
DUBAI_CLASSES = ["Building", "Land", "Road", "Vegetation", "Water"]
#: Dubai lies in UTM zone 40N.
DUBAI_CRS = "EPSG:32640"


def _richest_window(mask: np.ndarray, side: int, step: int = 64) -> tuple[int, int]:
    """Top-left corner of the ``side`` window (on a ``step`` grid) showing the most mask
    colours, the first such window in row-major order."""
    best, corner = -1, (0, 0)
    for r in range(0, mask.shape[0] - side + 1, step):
        for c in range(0, mask.shape[1] - side + 1, step):
            window = mask[r : r + side, c : c + side].reshape(-1, 3)
            n = len(np.unique(window, axis=0))
            if n > best:
                best, corner = n, (r, c)
    return corner


def write_dubai_crops(
    dubai: Path, out: Path, parts: range = range(5, 10), side: int = 256, geotiff: bool = False
) -> dict[str, Path]:
    """Crops of tile1's images and masks (where each shows the most classes) as
    ``out/images`` and ``out/masks`` (PNG, or GeoTIFF on a made-up UTM 40N grid), and the
    class table ``out/classes.csv``.

    Returns:
        {"images", "masks", "classes"} paths.
    """
    images, masks = out / "images", out / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for k, part in enumerate(parts):
        name = f"image_part_{part:03d}"
        rgb = np.asarray(Image.open(dubai / "tile1" / "images" / f"{name}.jpg").convert("RGB"))
        mask = np.asarray(Image.open(dubai / "tile1" / "masks" / f"{name}.png").convert("RGB"))
        r0, c0 = _richest_window(mask, side)
        rgb, mask = rgb[r0 : r0 + side, c0 : c0 + side], mask[r0 : r0 + side, c0 : c0 + side]
        if geotiff:
            transform = Affine(0.5, 0, 300_000 + 1000 * k, 0, -0.5, 2_780_000)
            for array, path in ((rgb, images / f"{name}.tif"), (mask, masks / f"{name}.tif")):
                with rasterio.open(
                    path, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8",
                    crs=DUBAI_CRS, transform=transform,
                ) as ds:  # fmt: skip
                    ds.write(np.moveaxis(array, -1, 0))
        else:
            Image.fromarray(rgb).save(images / f"{name}.png")
            Image.fromarray(mask).save(masks / f"{name}.png")
    classes = out / "classes.csv"
    classes.write_text(DUBAI_CLASS_TABLE)
    return {"images": images, "masks": masks, "classes": classes}
