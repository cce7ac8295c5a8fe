"""Small real rasters for tests: crops of the shared samples."""

from __future__ import annotations

from pathlib import Path

import rasterio
from rasterio.windows import Window

NEON = "neon_osbs_rgb_10cm_utm17n.tif"


def neon_crop(shared_data: Path, out: Path, width: int, height: int) -> Path:
    """A ``width`` x ``height`` RGB crop of the NEON 10 cm orthophoto at column 300, row
    200, georeferenced, written to ``out``."""
    with rasterio.open(shared_data / NEON) as src:
        window = Window(300, 200, width, height)
        profile = src.profile | {"width": width, "height": height, "count": 3,
                                 "transform": src.window_transform(window)}  # fmt: skip
        profile.pop("photometric", None)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read([1, 2, 3], window=window))
    return out
