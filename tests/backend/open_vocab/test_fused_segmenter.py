"""The fused open-vocabulary segmenter: a tiny trained RS-ZeroSeg + tiny training-free CLIP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.schemas import Mode, SegmentOptions
from rs_reasoner.segmenters.base import SegmentationQuery
from rs_reasoner.segmenters.open_vocab.fused_segmenter import FusedOpenVocabSegmenter
from rs_reasoner.segmenters.open_vocab.fusion_rules import RULES, fuse_probabilities
from rs_reasoner.segmenters.open_vocab.rs_zeroseg import checkpoint as ckpt
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.segmenter import RSZeroSegSegmenter
from tests.backend.open_vocab.test_rs_zeroseg import CLASSES, build
from tests.support.segmenters import tiny_clip_segmenter


@pytest.fixture(scope="module")
def fused(tmp_path_factory: pytest.TempPathFactory) -> FusedOpenVocabSegmenter:
    path = ckpt.save_checkpoint(tmp_path_factory.mktemp("rsz") / "m.pt", build(), CLASSES)
    trained = RSZeroSegSegmenter(ckpt.load_checkpoint(path), batch_size=4)
    return FusedOpenVocabSegmenter([trained, tiny_clip_segmenter()])


@pytest.fixture
def neon(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 96 x 128 corner of the real NEON sample, with a NoData strip."""
    with rasterio.open(shared_data / "neon_osbs_rgb_10cm_utm17n.tif") as ds:
        image = np.moveaxis(ds.read((1, 2, 3), window=((0, 96), (0, 128))), 0, -1)
    valid = np.ones(image.shape[:2], bool)
    valid[:, :16] = False
    return np.ascontiguousarray(image), valid


QUERY_CLASSES = (("building", "roof"), ("water",))


@pytest.mark.parametrize("rule", RULES)
def test_fused_probabilities_follow_the_documented_rule(
    fused: FusedOpenVocabSegmenter, neon: tuple[np.ndarray, np.ndarray], rule: str
) -> None:
    image, valid = neon
    sources = [s.predict_probabilities(image, valid, QUERY_CLASSES) for s in fused.sources]
    out = fused.predict_probabilities(image, valid, QUERY_CLASSES, rule=rule)  # type: ignore[arg-type]
    expected = fuse_probabilities(sources, rule=rule, valid=valid)  # type: ignore[arg-type]
    assert out.shape == (1 + len(QUERY_CLASSES), *valid.shape) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-5)


def test_segment_uses_the_request_rule_and_keeps_nodata_empty(
    fused: FusedOpenVocabSegmenter, neon: tuple[np.ndarray, np.ndarray]
) -> None:
    image, valid = neon
    for rule in ("max", "mean"):
        query = SegmentationQuery(
            "building; roof, water",
            Mode.open_vocabulary,
            QUERY_CLASSES,
            SegmentOptions(fusion_rule=rule),  # type: ignore[arg-type]
        )
        result = fused.segment(image, valid, query)
        probs = fused.predict_probabilities(image, valid, QUERY_CLASSES, rule=rule)  # type: ignore[arg-type]
        np.testing.assert_array_equal(result.labels[valid], probs.argmax(axis=0)[valid])
        assert (result.labels[~valid] == 0).all() and (result.scores[~valid] == 0).all()
        assert result.class_names == ["building", "water"]


def test_unknown_rule_gives_a_clear_error() -> None:
    with pytest.raises(InvalidRequestError, match="fusion rule"):
        FusedOpenVocabSegmenter([object(), object()], rule="vote")  # type: ignore[arg-type, list-item]
