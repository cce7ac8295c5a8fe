"""Tile plans on a lattice anchored at working pixel (0, 0), and stitching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rs_reasoner.raster import ExtentReader, open_raster
from rs_reasoner.schemas import Extent
from rs_reasoner.segmenters.base import TileResult
from rs_reasoner.tiling import Stitcher, Tile, fit_tile, plan_tiles
from tests.support.rasters import UTM_TRANSFORM, write_geotiff

WINDOWS = [
    (0, 0, 300, 400),
    (7, 13, 250, 391),
    (100, 100, 101, 102),
    (96, 192, 288, 384),  # exactly on the lattice
    (-40, -3, 50, 60),  # negative origin (a window partly off the raster)
]


@pytest.mark.parametrize("window", WINDOWS)
def test_cores_cover_the_extent_exactly_once(window) -> None:
    row0, col0, row1, col1 = window
    count = np.zeros((row1 - row0, col1 - col0), int)
    tiles = plan_tiles(*window, tile_size=64, overlap=8)
    for t in tiles:
        r0, c0, r1, c1 = t.core
        assert row0 <= r0 < r1 <= row1 and col0 <= c0 < c1 <= col1
        count[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] += 1
        # Fixed-size read window: the lattice cell plus the overlap on every side, so the
        # core always has at least `overlap` pixels of context.
        rr0, rc0, rr1, rc1 = t.read_window
        assert t.shape == (64, 64) and (rr1 - rr0, rc1 - rc0) == (64, 64)
        assert rr0 <= r0 - 8 and rr1 >= r1 + 8 and rc0 <= c0 - 8 and rc1 >= c1 + 8
        # Anchored at global working pixel (0, 0): cells start on multiples of the stride.
        assert (rr0 + 8) % 48 == 0 and (rc0 + 8) % 48 == 0
    assert (count == 1).all()
    assert tiles == sorted(tiles, key=lambda t: (t.core[0], t.core[1]))  # row-major


def test_no_overlap_and_single_tile() -> None:
    tiles = plan_tiles(0, 0, 128, 128, 64, 0)
    assert [t.core for t in tiles] == [t.read_window for t in tiles]
    assert len(tiles) == 4
    assert plan_tiles(3, 4, 20, 30, 1024, 128) == [
        Tile(core=(3, 4, 20, 30), read_window=(-128, -128, 896, 896))
    ]


def test_shifting_the_extent_keeps_interior_tiles() -> None:
    a = plan_tiles(40, 40, 360, 360, 128, 16)
    b = plan_tiles(43, 37, 363, 357, 128, 16)
    # Every tile whose core is a whole lattice cell inside both extents is identical.
    interior = [t for t in a if t.core[0] >= 96 and t.core[1] >= 96
                and t.core[2] <= 288 and t.core[3] <= 288]
    assert len(interior) == 4 and all(t in b for t in interior)
    # Even edge tiles read the same windows; only their cores follow the extent.
    assert {t.read_window for t in a} == {t.read_window for t in b}


@pytest.mark.parametrize(("tile_size", "overlap"), [(64, 32), (64, 40), (10, -1)])
def test_bad_tile_parameters(tile_size, overlap) -> None:
    with pytest.raises(ValueError):
        plan_tiles(0, 0, 100, 100, tile_size, overlap)


def global_truth(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Labels as a function of global position: 0 background, 1 = "a", 2 = "b"."""
    return ((rows // 37 + cols // 53) % 3).astype(np.int32)


def test_stitching_reproduces_a_global_map_exactly() -> None:
    window = (10, 20, 300, 380)
    stitcher = Stitcher(*window)
    for i, t in enumerate(plan_tiles(*window, 96, 16)):
        r0, c0, r1, c1 = t.read_window
        rr, cc = np.mgrid[r0:r1, c0:c1]
        truth = global_truth(rr, cc)
        # Tiles name classes in different orders; the stitcher matches them by name.
        if i % 2:
            names, local = ["b", "a"], np.choose(truth, [0, 2, 1]).astype(np.int32)
        else:
            names, local = ["a", "b"], truth
        scores = ((rr * 7 + cc) % 100 / 100).astype(np.float32)
        stitcher.add(t, TileResult(local, scores, names, text="same reasoning"))
    out = stitcher.result()
    rr, cc = np.mgrid[10:300, 20:380]
    truth = global_truth(rr, cc)
    assert out.labels.shape == (290, 360) and out.labels.dtype == np.int32
    assert out.class_names == ["a", "b"]  # first come, first numbered
    assert (out.labels == truth).all()
    assert (out.scores == ((rr * 7 + cc) % 100 / 100).astype(np.float32)).all()
    assert out.text == "same reasoning" and out.instances is None


def test_class_names_are_numbered_as_they_appear_and_texts_joined() -> None:
    window = (0, 0, 64, 128)
    tiles = plan_tiles(*window, 64, 0)
    stitcher = Stitcher(*window)
    ones = np.ones((64, 64), np.int32)
    stitcher.add(tiles[0], TileResult(ones, np.ones((64, 64), np.float32), ["water"], text="x"))
    stitcher.add(tiles[1], TileResult(ones * 2, np.ones((64, 64), np.float32),
                                      ["tree", "water"], text=""))
    out = stitcher.result()
    assert out.class_names == ["water", "tree"]
    assert (out.labels[:, :64] == 1).all() and (out.labels[:, 64:] == 1).all()
    stitcher.add(tiles[1], TileResult(ones, np.ones((64, 64), np.float32), ["tree"], text="y"))
    out = stitcher.result()
    assert (out.labels[:, 64:] == 2).all() and out.text == "x\n\ny"


def test_stitcher_rejects_results_that_do_not_fit() -> None:
    t = plan_tiles(0, 0, 10, 10, 64, 8)[0]
    with pytest.raises(ValueError, match="segmenter returned"):
        Stitcher(0, 0, 10, 10).add(
            t, TileResult(np.zeros((5, 5), np.int32), np.zeros((5, 5), np.float32), [])
        )
    with pytest.raises(ValueError, match="class names"):
        Stitcher(0, 0, 10, 10).add(
            t, TileResult(np.full((64, 64), 2, np.int32), np.zeros((64, 64), np.float32), ["a"])
        )


def test_tiled_reads_stitch_to_the_whole_extent_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(1, 255, (3, 300, 400), dtype=np.uint8)
    data[:, :, :25] = 0  # NoData strip: tiles see it as invalid, like the whole read
    path = write_geotiff(tmp_path / "a.tif", data, nodata=0)
    x0, y0 = UTM_TRANSFORM @ (15, 290)
    x1, y1 = UTM_TRANSFORM @ (390, 11)
    extent = Extent(xmin=x0, ymin=y0, xmax=x1, ymax=y1)
    for resolution in (None, 3.0):
        with open_raster(path) as ds:
            reader = ExtentReader.open(ds, extent, resolution=resolution)
            whole, whole_valid = reader.read_extent()
            stitcher = Stitcher(*reader.window)
            for t in plan_tiles(*reader.window, 64, 8):
                image, valid = reader.read(*t.read_window)
                labels = ((image[..., 0] > 128) & valid).astype(np.int32)
                stitcher.add(t, TileResult(labels, valid.astype(np.float32), ["bright"]))
            out = stitcher.result()
            assert (out.labels == ((whole[..., 0] > 128) & whole_valid)).all()
            assert (out.scores == whole_valid).all() and not whole_valid.all()


@pytest.mark.parametrize(
    ("request_", "extent", "grid", "expected"),
    [
        ((8192, 128), (1, 1), (1, 1), (64, 1)),  # 1 x 1 raster: no 8192² tile of NoData
        ((1024, 128), (10, 20), (300, 400), (276, 128)),  # core fits the extent
        ((1024, 128), (3000, 5000), (3000, 5000), (1024, 128)),  # large extent: unchanged
        ((128, 16), (5, 5), (5, 5), (64, 5)),  # context no wider than the raster
        ((32, 8), (1, 1), (1, 1), (32, 1)),  # never larger than asked
    ],
)
def test_fit_tile_reads_no_more_than_the_extent_needs(request_, extent, grid, expected) -> None:
    tile, overlap = fit_tile(*request_, extent, grid)
    assert (tile, overlap) == expected and tile > 2 * overlap
    # The fitted tiles still cover the extent exactly once.
    tiles = plan_tiles(0, 0, *extent, tile, overlap)
    assert sum((t.core[2] - t.core[0]) * (t.core[3] - t.core[1]) for t in tiles) == (
        extent[0] * extent[1]
    )


def test_stitched_instances_stay_unique_across_tiles() -> None:
    from rs_reasoner.segmenters.base import TileResult
    from rs_reasoner.tiling import Stitcher, plan_tiles

    tiles = plan_tiles(0, 0, 20, 40, tile_size=20, overlap=0)
    stitcher = Stitcher(0, 0, 20, 40)
    for tile in tiles:
        r0, c0, r1, c1 = tile.read_window
        shape = (r1 - r0, c1 - c0)
        instances = np.zeros(shape, np.int32)
        instances[:5], instances[10:15] = 1, 2
        stitcher.add(tile, TileResult(labels=(instances > 0).astype(np.int32),
                                      scores=np.ones(shape, np.float32),
                                      class_names=["car"], instances=instances))
    out = stitcher.result()
    assert out.instances is not None
    assert sorted(np.unique(out.instances).tolist()) == [0, 1, 2, 3, 4]
