from pathlib import Path

import numpy as np
import pytest
import rasterio

from rs_reasoner.batch.inputs import build_sources, group_rasters, resolve_inputs
from rs_reasoner.errors import RasterError
from tests.backend.batch.conftest import DATA, NEON, cut_tiles


def test_folder_glob_and_list_resolve_in_order(neon_tiles: list[Path]) -> None:
    folder = neon_tiles[0].parent
    assert resolve_inputs([str(folder)]) == [str(p) for p in sorted(neon_tiles)]
    assert resolve_inputs([str(folder / "tile_1*.tif")]) == [str(p) for p in neon_tiles[2:]]
    # The same raster named twice is read once.
    assert resolve_inputs([str(neon_tiles[1]), str(neon_tiles[1])]) == [str(neon_tiles[1])]


def test_a_pattern_matching_nothing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RasterError, match="No raster matches"):
        resolve_inputs([str(tmp_path / "*.tif")])


def test_rasters_on_one_grid_form_one_mosaic_others_their_own(neon_tiles: list[Path]) -> None:
    landsat = str(DATA / "landsat_rgb_utm18n.tif")
    groups = group_rasters([str(p) for p in neon_tiles] + [landsat])
    assert groups == [[str(p) for p in neon_tiles], [landsat]]


def test_mosaic_of_tiles_reads_the_original_pixels(neon_tiles: list[Path], tmp_path: Path) -> None:
    (source,) = build_sources([str(p) for p in neon_tiles], tmp_path)
    assert source.path.endswith(".vrt") and source.members == [str(p) for p in neon_tiles]
    with rasterio.open(source.path) as vrt, rasterio.open(NEON) as orig:
        assert vrt.transform == orig.transform and vrt.crs == orig.crs
        assert np.array_equal(vrt.read(), orig.read())


def test_overlapping_rasters_first_valid_pixel_wins(tmp_path: Path) -> None:
    # Two copies of the same area, one darkened, the other with a NoData hole.
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    with rasterio.open(NEON) as ds:
        data, profile = ds.read(), ds.profile | {"nodata": 0}
    holed = data.copy()
    holed[:, :50, :50] = 0
    for path, arr in ((a, holed), (b, data // 2 + 1)):
        with rasterio.open(path, "w", **profile) as out:
            out.write(arr)
    (source,) = build_sources([str(a), str(b)], tmp_path)
    with rasterio.open(source.path) as vrt:
        got = vrt.read()
    assert np.array_equal(got[:, 60:, 60:], holed[:, 60:, 60:])  # a first: a wins
    assert np.array_equal(got[:, :50, :50], (data // 2 + 1)[:, :50, :50])  # a's hole: b
    (reverse,) = build_sources([str(b), str(a)], tmp_path / "r")
    with rasterio.open(reverse.path) as vrt:
        assert np.array_equal(vrt.read()[:, 60:, 60:], (data // 2 + 1)[:, 60:, 60:])


def test_tiles_cut_at_uneven_edges(tmp_path: Path) -> None:
    tiles = cut_tiles(NEON, tmp_path, [0, 1, 400], [0, 399, 400])
    (source,) = build_sources([str(p) for p in tiles], tmp_path)
    with rasterio.open(source.path) as vrt:
        assert (vrt.width, vrt.height) == (400, 400)
