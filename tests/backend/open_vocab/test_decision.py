"""Probabilities → labels, scores and names; queries without classes are refused."""

from __future__ import annotations

import numpy as np
import pytest

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.schemas import Mode, SegmentOptions
from rs_reasoner.segmenters.base import SegmentationQuery
from rs_reasoner.segmenters.open_vocab.decision import argmax_result, require_classes


def test_argmax_result_labels_scores_and_nodata() -> None:
    probs = np.array(
        [
            [[0.6, 0.1], [0.2, 0.3]],  # background
            [[0.3, 0.7], [0.2, 0.3]],  # building
            [[0.1, 0.2], [0.6, 0.4]],  # water
        ],
        np.float32,
    )
    valid = np.array([[True, True], [True, False]])
    out = argmax_result(probs, valid, [("building", "roof"), ("water",)])
    np.testing.assert_array_equal(out.labels, [[0, 1], [2, 0]])
    np.testing.assert_allclose(out.scores, [[0.6, 0.7], [0.6, 0.0]])
    assert out.labels.dtype == np.int32 and out.scores.dtype == np.float32
    assert out.class_names == ["building", "water"]


def test_require_classes_refuses_an_empty_class_list() -> None:
    query = SegmentationQuery("", Mode.open_vocabulary, (), SegmentOptions())
    with pytest.raises(InvalidRequestError, match="at least one class"):
        require_classes(query)
    one = SegmentationQuery("water", Mode.open_vocabulary, (("water",),), SegmentOptions())
    require_classes(one)  # no error
