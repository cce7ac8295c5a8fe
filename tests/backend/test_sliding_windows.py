"""Sliding-window helpers: rs_reasoner.segmenters.sliding_windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rs_reasoner.segmenters.sliding_windows import blend_weight, window_starts


@pytest.mark.parametrize(
    ("size", "expected"),
    [(64, [0]), (50, [0]), (100, [0, 32, 36]), (128, [0, 32, 64]), (300, None)],
)
def test_window_starts_cover_the_extent(size: int, expected: list[int] | None) -> None:
    starts = window_starts(size, 64, 32)
    if expected is not None:
        assert starts == expected
    covered = np.zeros(max(size, 64), bool)
    for s in starts:
        covered[s : s + 64] = True
    assert covered.all()
    assert starts[-1] == max(size - 64, 0)
    assert all(0 < b - a <= 32 for a, b in zip(starts, starts[1:], strict=False))


@pytest.mark.parametrize(("height", "width"), [(64, 64), (7, 12), (1, 1)])
def test_blend_weight_is_a_floored_tent_peaking_at_the_centre(height: int, width: int) -> None:
    w = blend_weight(height, width)
    assert w.shape == (height, width) and w.dtype == torch.float32
    assert float(w.min()) >= 0.01 - 1e-7 and float(w.max()) <= 1.0
    # Separable: the outer product of its middle row and column profiles.
    row, col = w[height // 2], w[:, width // 2]
    expected = torch.outer(col, row) / w[height // 2, width // 2]
    assert torch.allclose(w, expected, atol=1e-6)
    # Symmetric, and no border pixel outweighs the centre.
    assert torch.equal(w, w.flip(0)) and torch.equal(w, w.flip(1))
    assert float(w[0, 0]) <= float(w[height // 2, width // 2])
    if height >= 20:
        assert float(w[0, 0]) == pytest.approx(0.01)  # both ramps at their 0.1 floor

