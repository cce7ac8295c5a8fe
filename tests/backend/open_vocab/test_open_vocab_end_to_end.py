"""Class lists end to end: CLI and HTTP service → one polygon layer with the asked labels.

The model is the production ClipOpenVocabSegmenter on a randomly initialised tiny CLIP
(``test-clip-tiny`` in tests/support/segmenters.py): which class wins where is random,
but the plumbing (query parsing, tiling, windows, labels, polygons, CRS) is real.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
from pyproj import CRS

from rs_reasoner.cli import main
from rs_reasoner.segmenters import registry
from rs_reasoner.segmenters.hub_weights import OPENAI_VIT_B16_WEIGHTS
from tests.backend.test_service_http import start_backend, stop_backend, submit, wait_job

CLASSES = {"buildings", "roads", "water"}


def test_cli_class_list_gives_one_layer_with_those_labels(shared_data: Path,
                                                          tmp_path: Path) -> None:
    raster = shared_data / "neon_osbs_rgb_10cm_utm17n.tif"
    out = tmp_path / "classes.shp"
    code = main([
        "segment", str(raster), "--query", "buildings, roads, water", "--model", "test-clip-tiny",
        "--score-threshold", "0", "--tile-size", "256", "--overlap", "32", "--out", str(out),
        "--quiet",
    ])  # fmt: skip
    assert code == 0
    gdf = gpd.read_file(out)
    assert len(gdf) > 0
    assert set(gdf["label"]) <= CLASSES
    assert set(gdf["mode"]) == {"open_vocabulary"}
    assert CRS.from_user_input(gdf.crs).to_epsg() == 32617
    # Every valid pixel got a class (no background names), so the polygons cover exactly the
    # pixels that are not NoData (the sample declares nodata=255).
    with rasterio.open(raster) as ds:
        valid_area = (ds.dataset_mask() > 0).sum() * abs(ds.res[0] * ds.res[1])
    assert gdf.geometry.area.sum() == pytest.approx(valid_area, rel=1e-6)


def test_service_job_with_a_class_list(shared_data: Path, tmp_path: Path) -> None:
    raster = tmp_path / "landsat.tif"
    shutil.copy(shared_data / "landsat_rgb_utm18n.tif", raster)
    backend = start_backend(tmp_path / "backend")
    try:
        with backend.client() as client:
            job = submit(client, {
                "raster": str(raster), "query": "water; river, vegetation", "mode": "auto",
                "model": "test-clip-tiny", "options": {"score_threshold": 0.0},
            })  # fmt: skip
            info = wait_job(client, job, timeout=120)
            assert info["status"] == "succeeded", info
            collection = client.get(f"/jobs/{job}/result").json()
    finally:
        stop_backend(backend)
    labels = {f["properties"]["label"] for f in collection["features"]}
    # Synonyms are one class named by its first name.
    assert labels and labels <= {"water", "vegetation"}
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32618"


def test_registered_weights_match_the_model_module() -> None:
    spec = registry.get_spec("clip-openvocab")
    assert spec.weights == (OPENAI_VIT_B16_WEIGHTS,)
    assert registry.default_for(spec.modes[0]).name in ("clip-openvocab", "test-colour")


def test_remoteclip_is_registered_and_missing_weights_name_it(empty_hub_cache: Path) -> None:
    from rs_reasoner.errors import MissingWeightsError
    from rs_reasoner.segmenters.hub_weights import REMOTECLIP_VIT_L14_WEIGHTS

    spec = registry.get_spec("remoteclip-openvocab")
    assert spec.weights == (REMOTECLIP_VIT_L14_WEIGHTS,)
    # Fails before building the 430M-parameter model, naming what to fetch and how.
    with pytest.raises(MissingWeightsError) as err:
        registry.create(spec)
    text = f"{err.value} {err.value.hint}"
    assert "chendelong/RemoteCLIP" in text and "remoteclip-openvocab" in text
