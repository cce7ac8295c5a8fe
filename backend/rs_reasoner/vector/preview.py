"""PNG preview: polygons drawn over the image they were found in."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import geopandas as gpd
import numpy as np
from affine import Affine
from PIL import Image, ImageDraw

from rs_reasoner.atomic import LITTER_PREFIX, sweep_litter

#: Outline/fill colours per label, cycled (a qualitative palette).
PALETTE = [
    (228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0),
    (255, 255, 51), (166, 86, 40), (247, 129, 191),
]


def _rings(geom):
    for poly in getattr(geom, "geoms", [geom]):
        if poly.geom_type != "Polygon":
            continue
        yield poly.exterior, [ring for ring in poly.interiors]


def render_preview(
    image: np.ndarray,
    polygons: gpd.GeoDataFrame,
    transform: Affine,
    path: str | os.PathLike[str],
    max_size: int = 2048,
) -> Path:
    """Draw polygons (translucent fill, solid outline, one colour per label) over an image.

    Args:
        image: (H, W, 3) uint8 image of the extent.
        polygons: Polygons in the CRS of ``transform``, with a ``label`` column.
        transform: Pixel → map transform of ``image``.
        path: Output PNG, replaced atomically.
        max_size: Longest side of the PNG; larger images are downsampled.

    Returns:
        The path written.
    """
    height, width = image.shape[:2]
    scale = min(1.0, max_size / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    base = Image.fromarray(np.ascontiguousarray(image[..., :3])).convert("RGBA")
    if scale < 1.0:
        base = base.resize(size, Image.Resampling.BILINEAR)
    overlay = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    to_pixel = Affine.scale(scale) @ ~transform
    labels = list(dict.fromkeys(polygons["label"])) if "label" in polygons else []
    for i, geom in enumerate(polygons.geometry):
        label = polygons["label"].iloc[i] if labels else None
        colour = PALETTE[labels.index(label) % len(PALETTE)] if labels else PALETTE[0]
        for exterior, holes in _rings(geom):
            points = [to_pixel @ xy for xy in exterior.coords]
            draw.polygon(points, fill=(*colour, 90))
            for hole in holes:  # punch holes back to transparent
                draw.polygon([to_pixel @ xy for xy in hole.coords], fill=(0, 0, 0, 0))
            draw.line(points, fill=(*colour, 255), width=2)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A plain open (not mkstemp) so the PNG gets the user's umask, not 0600.
    sweep_litter(out.parent)
    # Named like every temporary output (pid inside), so a killed render is swept later.
    tmp = out.parent / f"{LITTER_PREFIX}{os.getpid()}-{out.name}.{uuid.uuid4().hex}.tmp"
    try:
        Image.alpha_composite(base, overlay).convert("RGB").save(tmp, format="PNG")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
