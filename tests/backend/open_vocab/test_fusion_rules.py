"""Class-wise confidence-guided fusion on constructed probability maps."""

from __future__ import annotations

import numpy as np
import pytest

from rs_reasoner.segmenters.open_vocab.fusion_rules import (
    class_confidences,
    fuse_probabilities,
    fusion_weights,
)


def maps(pixels: list[list[float]], shape: tuple[int, int] = (1, 4)) -> np.ndarray:
    """(C, H, W) from one class-probability vector per pixel, row-major."""
    return np.asarray(pixels, np.float32).T.reshape(-1, *shape)


# Four pixels, three classes. A never predicts class 2 (it "omits" it); B does, on pixel 3.
A = maps([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.7, 0.25, 0.05]])
B = maps([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.5, 0.4], [0.15, 0.1, 0.75]])


def test_confidences_are_mean_probability_over_each_sources_own_pixels() -> None:
    kappa = class_confidences([A, B])
    expected = np.array(
        [
            [(0.7 + 0.6 + 0.7) / 3, 0.7, 0.0],  # A: class 0 on pixels 0,1,3; class 1 on 2
            [(0.9 + 0.8) / 2, 0.5, 0.75],  # B: class 0 on 0,1; class 1 on 2; class 2 on 3
        ]
    )
    np.testing.assert_allclose(kappa, expected, atol=1e-6)
    w = fusion_weights(kappa)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(w[:, 0], expected[:, 0] / expected[:, 0].sum(), atol=1e-6)
    np.testing.assert_allclose(w[:, 2], [0.0, 1.0], atol=1e-6)


def test_confidence_weighted_fusion_follows_the_formula() -> None:
    w = fusion_weights(class_confidences([A, B]))
    fused = fuse_probabilities([A, B], "confidence_weighted", renormalize=False)
    np.testing.assert_allclose(fused, w[0][:, None, None] * A + w[1][:, None, None] * B, atol=1e-6)
    renorm = fuse_probabilities([A, B], "confidence_weighted")
    np.testing.assert_allclose(renorm.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(renorm.argmax(0), fused.argmax(0))


def test_a_class_one_source_omits_is_kept_from_the_other() -> None:
    fused = fuse_probabilities([A, B], "confidence_weighted")
    assert fused.argmax(0)[0, 3] == 2  # B's class 2 survives A's omission
    raw = fuse_probabilities([A, B], "confidence_weighted", renormalize=False)
    assert raw[2, 0, 3] == pytest.approx(0.75)  # undiluted: A gets no weight on class 2
    mean = fuse_probabilities([A, B], "mean")
    assert mean.argmax(0)[0, 3] == 0  # plain averaging loses it (0.425 vs 0.4)
    assert fuse_probabilities([A, B], "max").argmax(0)[0, 3] == 2


def test_max_and_mean_rules() -> None:
    np.testing.assert_allclose(
        fuse_probabilities([A, B], "max", renormalize=False), np.maximum(A, B), atol=1e-7
    )
    np.testing.assert_allclose(
        fuse_probabilities([A, B], "mean", renormalize=False), (A + B) / 2, atol=1e-7
    )
    fused = fuse_probabilities([A, B], "max")
    np.testing.assert_allclose(fused.sum(axis=0), 1.0, atol=1e-6)


def test_valid_mask_and_min_pixels_limit_the_statistics() -> None:
    valid = np.array([[True, True, True, False]])
    kappa = class_confidences([A, B], valid=valid)
    assert kappa[1, 2] == 0.0  # B's only class-2 pixel is invalid
    assert kappa[0, 0] == pytest.approx((0.7 + 0.6) / 2)
    kappa = class_confidences([A, B], min_pixels=2)
    assert kappa[0, 1] == 0.0 and kappa[1, 2] == 0.0  # predicted on one pixel only
    assert kappa[0, 0] > 0 and kappa[1, 0] > 0


def test_unpredicted_class_falls_back_to_equal_weights() -> None:
    kappa = np.array([[0.8, 0.0], [0.6, 0.0]], np.float32)
    np.testing.assert_allclose(fusion_weights(kappa)[:, 1], [0.5, 0.5])


def test_single_source_is_unchanged() -> None:
    for rule in ("mean", "max", "confidence_weighted"):
        np.testing.assert_allclose(fuse_probabilities([A], rule), A, atol=1e-6)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one"):
        fuse_probabilities([])
    with pytest.raises(ValueError, match="shape"):
        fuse_probabilities([A, A[:2]])
    with pytest.raises(ValueError, match="unknown fusion rule"):
        fuse_probabilities([A, B], "vote")  # type: ignore[arg-type]
