"""Examples from a polygon layer over the NEON sample raster, an EarthReason folder, and
one clear error for each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from PIL import Image
from shapely.geometry import Polygon, box

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.segmenters.reasoning.template import MAX_QUERY_CHARS
from rs_reasoner_training.grpo.examples import examples_from_folder, examples_from_layer

RASTER = "neon_osbs_rgb_10cm_utm17n.tif"


def _layer(shared_data: Path, tmp_path: Path, queries: list[str | None], geoms=None) -> Path:  # noqa: ANN001
    with rasterio.open(shared_data / RASTER) as ds:
        left, bottom, right, top = ds.bounds
        crs = ds.crs
    if geoms is None:
        # Small squares spread from west to east (4 m sides at 10 cm = 40 px).
        step = (right - left) / (len(queries) + 1)
        geoms = [box(left + (k + 1) * step, bottom + 20, left + (k + 1) * step + 4, bottom + 24)
                 for k in range(len(queries))]  # fmt: skip
    path = tmp_path / "answers.gpkg"
    gpd.GeoDataFrame({"question": queries}, geometry=geoms, crs=crs).to_file(path)
    return path


def test_layer_examples_targets_negatives_and_spatial_holdout(
    shared_data: Path, tmp_path: Path
) -> None:
    queries = ["dark tree crowns"] * 6
    path = _layer(shared_data, tmp_path, queries)
    examples = examples_from_layer(
        shared_data / RASTER, path, query_field="question", negatives=0.5, holdout_fraction=0.25
    )
    positives = [e for e in examples if not e.negative]
    negatives = [e for e in examples if e.negative]
    assert len(positives) >= 4 and negatives
    for e in examples:
        assert e.image.dtype == np.uint8 and e.image.shape[:2] == e.target.shape
        assert e.query == "dark tree crowns"
    for e in positives:
        # context 2: the 40-px polygon fills about a quarter of the 80-px extent.
        share = e.target.mean()
        assert 0.15 < share < 0.35, share
    held = [e for e in examples if e.heldout]
    train = [e for e in examples if not e.heldout]
    assert held and train
    # Held out = the eastern end; no training extent overlaps a held-out one.
    assert min(h.bounds[0] for h in held) > min(t.bounds[0] for t in train)
    for h in held:
        for t in train:
            assert not box(*h.bounds).intersects(box(*t.bounds).buffer(-1e-6))


def test_one_query_for_the_whole_layer(shared_data: Path, tmp_path: Path) -> None:
    path = _layer(shared_data, tmp_path, [None, None, None])
    examples = examples_from_layer(
        shared_data / RASTER, path, query="bare sand", negatives=0, holdout_fraction=0
    )
    assert len(examples) == 3 and {e.query for e in examples} == {"bare sand"}


def test_bad_examples_get_one_clear_error_each(shared_data: Path, tmp_path: Path) -> None:
    raster = shared_data / RASTER
    good = _layer(shared_data, tmp_path, ["trees", "trees"])
    with pytest.raises(InvalidRequestError, match="no field 'label'.*question"):
        examples_from_layer(raster, good, query_field="label")
    with pytest.raises(InvalidRequestError, match="either a query field or one query"):
        examples_from_layer(raster, good)

    with rasterio.open(raster) as ds:
        left, bottom = ds.bounds.left, ds.bounds.bottom
    empty = [box(left + 5, bottom + 5, left + 9, bottom + 9), Polygon()]
    path = _layer(shared_data, tmp_path, ["trees", "trees"], empty)
    with pytest.raises(InvalidRequestError, match="1 feature.*empty geometry.*rows 1"):
        examples_from_layer(raster, path, query_field="question")

    far = [box(left + 5, bottom + 5, left + 9, bottom + 9),
           box(left + 1e5, bottom + 1e5, left + 1e5 + 4, bottom + 1e5 + 4)]  # fmt: skip
    path = _layer(shared_data, tmp_path, ["trees", "trees"], far)
    with pytest.raises(InvalidRequestError, match="1 polygon.*outside the raster.*rows 1"):
        examples_from_layer(raster, path, query_field="question")

    path = _layer(shared_data, tmp_path, ["trees", "x" * (MAX_QUERY_CHARS + 1)])
    with pytest.raises(InvalidRequestError, match=f"feature 1 has {MAX_QUERY_CHARS + 1} char"):
        examples_from_layer(raster, path, query_field="question")


def _folder_sample(base: Path, stem: str, mask: np.ndarray, question: str) -> None:
    for sub in ("images", "labels", "QAs"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(0).integers(0, 255, (*mask.shape, 3), dtype=np.uint8)
    Image.fromarray(image).save(base / "images" / f"{stem}.jpg")
    Image.fromarray(mask.astype(np.uint8) * 255).save(base / "labels" / f"{stem}.png")
    (base / "QAs" / f"{stem}.json").write_text(json.dumps({"questions": [question, "other"]}))


def test_earthreason_folder(tmp_path: Path) -> None:
    mask = np.zeros((32, 32), bool)
    mask[4:12, 4:12] = True
    _folder_sample(tmp_path / "train", "a", mask, "the pond")
    _folder_sample(tmp_path / "train", "b", np.zeros((32, 32), bool), "the pond")
    _folder_sample(tmp_path / "val", "c", mask, "the pond")
    examples = {e.name: e for e in examples_from_folder(tmp_path)}
    assert set(examples) == {"a", "b", "c"}
    assert examples["a"].target.sum() == 64 and not examples["a"].heldout
    assert examples["b"].negative and examples["c"].heldout
    assert examples["a"].query == "the pond"
    (tmp_path / "train" / "labels" / "b.png").unlink()
    with pytest.raises(InvalidRequestError, match="b.jpg has no labels/b.png"):
        examples_from_folder(tmp_path)
