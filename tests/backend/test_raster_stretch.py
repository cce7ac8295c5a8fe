"""stretch_params / apply_stretch: 8-bit untouched, other types by per-band percentiles."""

from __future__ import annotations

import numpy as np
import pytest

from rs_reasoner.raster import apply_stretch, stretch_params


def test_uint8_is_identity() -> None:
    values = np.arange(256, dtype=np.uint8)
    lo, hi = stretch_params(np.stack([values[10:200]] * 3), "uint8")  # narrow data: ignored
    assert lo.tolist() == [0, 0, 0] and hi.tolist() == [255, 255, 255]
    square = values.reshape(16, 16)
    data = np.stack([square, square.T, 255 - square])
    out = apply_stretch(data, lo, hi)
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    assert (out == np.moveaxis(data, 0, -1)).all()


def test_uint16_per_band_percentiles() -> None:
    ramp = np.arange(1000, 2001, dtype=np.uint16)
    samples = np.stack([ramp, ramp * 2, ramp // 4])
    lo, hi = stretch_params(samples, "uint16")
    assert lo == pytest.approx([1020, 2040, 255])
    assert hi == pytest.approx([1980, 3960, 495])
    data = np.array([[[900, 1020, 1500, 1980, 3000]]] * 3, dtype=np.uint16)
    out = apply_stretch(data, lo, hi)
    assert out.shape == (1, 5, 3)
    assert out[0, :, 0].tolist() == [0, 0, 128, 255, 255]  # (1500-1020)/960*255 = 127.5
    custom = stretch_params(samples, "uint16", low=0.0, high=100.0)
    assert custom[0][0] == 1000 and custom[1][0] == 2000


def test_signed_and_float_types() -> None:
    signed = np.stack([np.arange(-500, 501, dtype=np.int16)] * 3)
    lo, hi = stretch_params(signed, "int16")
    assert lo[0] == pytest.approx(-480) and hi[0] == pytest.approx(480)
    out = apply_stretch(np.zeros((3, 2, 2), np.int16), lo, hi)
    assert (out == 128).all()
    refl = np.stack([np.linspace(0.0, 0.5, 101)] * 3).astype(np.float32)
    lo, hi = stretch_params(refl, "float32")
    assert lo[0] == pytest.approx(0.01) and hi[0] == pytest.approx(0.49)
    big = np.stack([np.linspace(0, 2**31 - 1, 101)] * 3).astype(np.int32)
    lo, hi = stretch_params(big, "int32")
    assert (hi > lo).all() and apply_stretch(big[:, None, :], lo, hi)[0, -1, 0] == 255


def test_non_finite_samples_are_ignored_and_become_zero() -> None:
    samples = np.stack([np.r_[np.linspace(0, 1, 101), np.nan, np.inf, -np.inf]] * 3)
    lo, hi = stretch_params(samples, "float64")
    assert lo[0] == pytest.approx(0.02) and hi[0] == pytest.approx(0.98)
    data = np.array([[[np.nan, np.inf, -np.inf, 0.5]]] * 3)
    assert apply_stretch(data, lo, hi)[0, :, 0].tolist() == [0, 0, 0, 128]


def test_constant_and_sparse_bands_do_not_divide_by_zero() -> None:
    lo, hi = stretch_params(np.full((3, 50), 7.0), "float32")
    assert (hi > lo).all()
    with np.errstate(all="raise"):
        out = apply_stretch(np.full((3, 2, 2), 7.0), lo, hi)
    assert (out == 0).all()
    # 99 % zeros: the 2-98 % range is empty, so the full range keeps the rare values.
    sparse = np.zeros((3, 1000), np.uint16)
    sparse[:, :10] = np.arange(100, 1100, 100)
    lo, hi = stretch_params(sparse, "uint16")
    assert lo.tolist() == [0] * 3 and hi.tolist() == [1000] * 3
    # No valid samples at all: any usable range.
    lo, hi = stretch_params(np.zeros((3, 0), np.uint16), "uint16")
    assert (hi > lo).all()


def test_large_images_are_converted_in_chunks_identically() -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4096, (3, 2500, 7), dtype=np.uint16)
    lo, hi = np.array([100.0, 200.0, 300.0]), np.array([3000.0, 3500.0, 4000.0])
    expected = np.clip(np.rint((data - lo[:, None, None]) / (hi - lo)[:, None, None] * 255), 0, 255)
    assert (apply_stretch(data, lo, hi) == np.moveaxis(expected, 0, -1)).all()
