"""Sentences end to end: CLI and HTTP service → polygons with the model's reasoning.

The model is the production ReasoningSegmenter on a random tiny Qwen2.5-VL (which really
generates tokens) and a random SAM 2.1 hiera-tiny (``test-think2seg-tiny`` in
tests/support/segmenters.py). Random weights never write a usable answer, so a fixed
Think2Seg-RS answer is appended to the generated text: the parse → 840-frame → SAM →
polygons → attributes path is the real one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import rasterio
from pyproj import CRS
from shapely.geometry import box

from rs_reasoner.cli import main
from rs_reasoner.segmenters.reasoning.geometry import ModelFrame
from tests.backend.test_service_http import start_backend, stop_backend, submit, wait_job
from tests.support.segmenters import TINY_REASONING_THINK

QUERY = "the bright patch that would flood first"
#: The canned answer's box in the 840 x 840 model frame (see tests/support).
MODEL_BOX = (60, 80, 420, 400)


def _box_in_map_units(raster: Path) -> tuple[object, object]:
    with rasterio.open(raster) as ds:
        frame = ModelFrame(width=ds.width, height=ds.height)
        x0, y0, x1, y1 = frame.box_to_pixels(MODEL_BOX)
        left, top = ds.transform @ (x0, y0)
        right, bottom = ds.transform @ (x1, y1)
        return box(left, bottom, right, top), box(*ds.bounds)


def test_cli_reasoning_query_writes_polygons_with_the_reasoning(
    shared_data: Path, tmp_path: Path, capsys
) -> None:
    raster = shared_data / "neon_osbs_rgb_10cm_utm17n.tif"
    out = tmp_path / "reasoning.shp"
    code = main([
        "segment", str(raster), "--query", QUERY, "--mode", "reasoning",
        "--model", "test-think2seg-tiny", "--out", str(out), "--quiet", "--verbose",
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert f"reasoning: {TINY_REASONING_THINK}" in printed
    assert "log: raw answer:" in printed  # the raw answer is in the job log

    gdf = gpd.read_file(out)
    assert len(gdf) >= 1
    # Shapefile field names are cut to 10 characters; the reasoning fits in 254.
    assert set(gdf["reasoning"]) == {TINY_REASONING_THINK}
    assert set(gdf["label"]) == {QUERY}
    assert set(gdf["mode"]) == {"reasoning"}
    assert CRS.from_user_input(gdf.crs).to_epsg() == 32617
    prompt_box, bounds = _box_in_map_units(raster)
    union = gdf.geometry.union_all()
    # SAM was prompted at the box mapped back from the 840 frame: its mask touches the box
    # and stays inside the raster.
    assert union.intersects(prompt_box)
    assert bounds.buffer(1e-6).contains(union)


def test_service_reasoning_job_keeps_reasoning_and_raw_answer(
    shared_data: Path, tmp_path: Path
) -> None:
    raster = tmp_path / "neon.tif"
    shutil.copy(shared_data / "neon_osbs_rgb_10cm_utm17n.tif", raster)
    backend = start_backend(tmp_path / "backend")
    try:
        with backend.client() as client:
            job = submit(client, {
                "raster": str(raster), "query": QUERY, "mode": "reasoning",
                "model": "test-think2seg-tiny", "options": {"instance_mode": "union"},
            })  # fmt: skip
            info = wait_job(client, job, timeout=180)
            assert info["status"] == "succeeded", info
            collection = client.get(f"/jobs/{job}/result").json()
    finally:
        stop_backend(backend)
    assert info["reasoning"] == TINY_REASONING_THINK
    assert any(m.startswith("raw answer:") and "bbox_2d" in m for m in info["messages"])
    features = collection["features"]
    assert features
    props = features[0]["properties"]
    assert props["reasoning"] == TINY_REASONING_THINK and props["label"] == QUERY
    # The request's union mode won over the model's default (auto keeps instance ids).
    assert all("instance" not in f["properties"] for f in features)
