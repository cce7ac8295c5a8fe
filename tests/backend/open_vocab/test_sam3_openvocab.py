"""SAM 3 open vocabulary: a tiny random SAM 3 saved in facebook/sam3's layout, loaded by
the production loader, run end to end through the CLI on real imagery."""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from rs_reasoner.cli import main
from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters import registry
from rs_reasoner.segmenters.hub_weights import SAM3_WEIGHTS
from rs_reasoner.segmenters.open_vocab.sam3_openvocab import SAM3_INPUT_SIZE
from rs_reasoner.weights import is_available
from tests.backend.published_layouts import snapshot_dir, tiny_sam3, write_sam3

NEON = Path(__file__).resolve().parents[3].parent / "shared" / "data" / (
    "neon_osbs_rgb_10cm_utm17n.tif"
)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for key in list(os.environ):
        if key.startswith("RS_REASONER_WEIGHTS_"):
            monkeypatch.delenv(key)
    return cache


@pytest.fixture
def raster(tmp_path: Path) -> Path:
    """A 160 x 140 crop of the NEON 10 cm orthophoto."""
    out = tmp_path / "crop.tif"
    with rasterio.open(NEON) as src:
        window = Window(300, 200, 140, 160)
        data = src.read([1, 2, 3], window=window)
        profile = src.profile | {"width": 140, "height": 160, "count": 3,
                                 "transform": src.window_transform(window)}
    profile.pop("photometric", None)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


def test_spec_facts_match_the_model_code() -> None:
    spec = registry.get_spec("sam3-openvocab")
    assert spec.input_size == SAM3_INPUT_SIZE == 1008
    assert spec.weights == (SAM3_WEIGHTS,) and spec.default_devices == ("cuda",)


def test_segment_returns_one_polygon_per_instance(
    hub_cache: Path, raster: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "objects.gpkg"
    args = [
        "segment", str(raster), "--query", "buildings, roads, water",
        "--model", "sam3-openvocab", "--out", str(out), "--device", "cpu",
    ]
    assert main(args) == 2  # no weights: the usual clear message
    err = capsys.readouterr().err
    assert "facebook/sam3" in err and "rs-reasoner models pull sam3-openvocab" in err
    assert "Traceback" not in err

    snap = snapshot_dir(hub_cache, "facebook/sam3")
    (snap / "config.json").write_text("{}")  # a partial snapshot is not the model
    assert not is_available(SAM3_WEIGHTS)
    write_sam3(snap, *tiny_sam3())
    assert is_available(SAM3_WEIGHTS)

    assert main(args) == 0
    polygons = gpd.read_file(out)
    assert len(polygons) > 0
    assert set(polygons["label"]) <= {"buildings", "roads", "water"}
    assert ((polygons["score"] > 0) & (polygons["score"] <= 1)).all()
    objects = polygons[polygons["instance"] > 0]  # instance 0: semantic-head coverage only
    assert len(objects) > 0
    # One polygon (a MultiPolygon where split) per object.
    assert not objects.duplicated(["label", "instance"]).any()


def test_is_the_cuda_default_only_with_its_weights(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rs_reasoner.segmenters.builtin import BUILTIN_SPECS

    monkeypatch.setattr(registry, "specs", lambda: list(BUILTIN_SPECS))  # no test models
    assert registry.default_for(Mode.open_vocabulary, "cuda").name != "sam3-openvocab"
    write_sam3(snapshot_dir(hub_cache, "facebook/sam3"), *tiny_sam3())
    assert registry.default_for(Mode.open_vocabulary, "cuda").name == "sam3-openvocab"
    assert registry.default_for(Mode.open_vocabulary, "cpu").name != "sam3-openvocab"


def test_segmenter_output_maps(hub_cache: Path) -> None:
    from rs_reasoner.segmenters.base import SegmentationQuery
    from rs_reasoner.segmenters.open_vocab.sam3_openvocab import Sam3OpenVocabSegmenter

    write_sam3(snapshot_dir(hub_cache, "facebook/sam3"), *tiny_sam3())
    seg = Sam3OpenVocabSegmenter.from_pretrained()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 150, 3), dtype=np.uint8)  # > one 112-px window
    valid = np.ones((200, 150), bool)
    valid[:, :10] = False
    query = SegmentationQuery("x", Mode.open_vocabulary, classes=(("buildings",), ("roads",)))
    r = seg.segment(image, valid, query)
    assert r.labels.shape == r.scores.shape == r.instances.shape == (200, 150)
    assert (r.labels[:, :10] == 0).all() and (r.instances[:, :10] == 0).all()
    assert (r.instances[r.labels == 0] == 0).all()
    assert r.labels.max() > 0 and r.instances.max() > 0
    ids = np.unique(r.instances[r.instances > 0])
    assert ids.tolist() == list(range(1, len(ids) + 1))
    for i in ids:  # an instance has one class
        assert len(np.unique(r.labels[r.instances == i])) == 1
