"""Shared fixtures of the batch tests: a mosaic cut from a real raster, and comparisons
with the single-extent pipeline."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import Window

from rs_reasoner.batch.run import BatchConfig
from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.schemas import SegmentOptions, SegmentRequest

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
NEON = DATA / "neon_osbs_rgb_10cm_utm17n.tif"

#: Small tiles so a 400 px raster makes many units and seams (stride 48, units of 96).
# min_area is not a whole number of pixels (0.01 m² each): an object of exactly min_area
# is kept or dropped by float noise in its coordinates, which differ by unit offset.
OPTIONS = SegmentOptions(tile_size=64, overlap=8, min_area=0.055, simplify=0.0)
QUERY = "trees"


def cut_tiles(src: Path, folder: Path, rows: list[int], cols: list[int]) -> list[Path]:
    """Cut ``src`` into GeoTIFF tiles at the given row and column edges (row-major)."""
    paths = []
    with rasterio.open(src) as ds:
        for i, (r0, r1) in enumerate(zip(rows[:-1], rows[1:], strict=True)):
            for j, (c0, c1) in enumerate(zip(cols[:-1], cols[1:], strict=True)):
                window = Window(c0, r0, c1 - c0, r1 - r0)
                profile = ds.profile | {
                    "width": c1 - c0, "height": r1 - r0,
                    "transform": ds.window_transform(window),
                }  # fmt: skip
                profile.pop("blockxsize", None)
                profile.pop("blockysize", None)
                profile["tiled"] = False
                path = folder / f"tile_{i}{j}.tif"
                with rasterio.open(path, "w", **profile) as out:
                    out.write(ds.read(window=window))
                paths.append(path)
    return paths


@pytest.fixture
def neon_tiles(tmp_path: Path) -> list[Path]:
    """The NEON sample cut into 4 tiles whose edges fall inside units (not on them)."""
    folder = tmp_path / "tiles"
    folder.mkdir()
    return cut_tiles(NEON, folder, [0, 170, 400], [0, 230, 400])


def request(**update) -> SegmentRequest:
    return SegmentRequest(raster="unused", query=QUERY, model="index-baseline",
                          options=OPTIONS.model_copy(update=update))  # fmt: skip


def config(inputs: list, out: Path, **kwargs) -> BatchConfig:
    kwargs.setdefault("quiet", True)
    kwargs.setdefault("workers", 0)
    kwargs.setdefault("unit_tiles", 2)
    kwargs.setdefault("device", "cpu")
    return BatchConfig(inputs=[str(p) for p in inputs], out=out, request=request(), **kwargs)


def single_extent(raster: Path) -> gpd.GeoDataFrame:
    """The pipeline's result for the whole raster with the batch's options."""
    req = request().model_copy(update={"raster": str(raster)})
    return SegmentationPipeline(device="cpu").run(req, str(raster)).polygons


def assert_same_polygons(got: gpd.GeoDataFrame, want: gpd.GeoDataFrame) -> None:
    """Same objects (label, geometry up to float noise, score, area), in any order."""
    assert len(got) == len(want)

    def key(frame: gpd.GeoDataFrame) -> list:
        cent = shapely.centroid(frame.geometry.values)
        order = np.lexsort((shapely.get_y(cent).round(3), shapely.get_x(cent).round(3),
                            frame["area"].round(3)))  # fmt: skip
        return frame.iloc[order].reset_index(drop=True)

    g, w = key(got), key(want)
    assert list(g["label"]) == list(w["label"])
    assert np.allclose(g["area"], w["area"], rtol=1e-9)
    assert np.allclose(g["score"], w["score"], atol=1e-4)
    sym = shapely.area(shapely.symmetric_difference(g.geometry.values, w.geometry.values))
    assert sym.max() < 1e-6
