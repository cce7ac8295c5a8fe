"""Tests for rs_reasoner.vector.preview."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rs_reasoner.vector import render_preview, vectorize
from rs_reasoner.vector.preview import PALETTE
from tests.support.rasters import UTM_CRS, UTM_TRANSFORM


def test_polygon_is_drawn_where_it_lies(tmp_path: Path) -> None:
    image = np.full((100, 200, 3), 40, np.uint8)
    labels = np.zeros((100, 200), np.int32)
    labels[20:60, 100:180] = 1
    gdf = vectorize(labels, np.ones((100, 200)), ["roof"], UTM_TRANSFORM, UTM_CRS)
    out = render_preview(image, gdf, UTM_TRANSFORM, tmp_path / "p.png")
    png = np.asarray(Image.open(out))
    assert png.shape == (100, 200, 3)
    inside, outside = png[40, 140].astype(int), png[80, 40].astype(int)
    assert (outside == 40).all()
    # Translucent fill in the first palette colour: red channel up, others not.
    assert inside[0] > 80 and inside[0] > inside[1]
    assert tuple(png[20, 140]) == PALETTE[0] or tuple(png[21, 140]) == PALETTE[0]


def test_large_image_is_downsampled(tmp_path: Path) -> None:
    image = np.zeros((300, 600, 3), np.uint8)
    labels = np.zeros((300, 600), np.int32)
    gdf = vectorize(labels, np.zeros((300, 600)), ["x"], UTM_TRANSFORM, UTM_CRS)
    out = render_preview(image, gdf, UTM_TRANSFORM, tmp_path / "a" / "p.png", max_size=120)
    assert Image.open(out).size == (120, 60)
    assert [p.name for p in out.parent.iterdir()] == ["p.png"]


def test_a_killed_render_leaves_nothing_after_the_next_one(tmp_path: Path) -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid is now free: a writer that died
    (tmp_path / f".rs-reasoner-{child.pid}-p.png.1f2e.tmp").write_bytes(b"half a PNG")
    image = np.full((10, 10, 3), 40, np.uint8)
    gdf = vectorize(np.ones((10, 10), np.int32), np.ones((10, 10)), ["x"], UTM_TRANSFORM, UTM_CRS)
    render_preview(image, gdf, UTM_TRANSFORM, tmp_path / "p.png")
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]
