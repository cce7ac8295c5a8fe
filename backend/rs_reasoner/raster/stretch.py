"""Contrast stretch of any pixel type to the 8-bit RGB models expect."""

from __future__ import annotations

import numpy as np

#: Rows converted at a time in :func:`apply_stretch`, to bound float temporaries on
#: whole-extent reads.
_CHUNK_ROWS = 1024


def stretch_params(
    samples: np.ndarray, dtype: str | np.dtype, low: float = 2.0, high: float = 98.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band input range mapped to 0..255.

    8-bit imagery keeps its values (identity 0..255), so photos are not altered; other
    types (uint16, int16, int32, float) use per-band percentiles of the valid samples,
    so 11-bit satellite data and float reflectances look like photographs.

    Args:
        samples: (bands, N) valid pixel values (non-finite values are ignored).
        dtype: The raster's data type.
        low: Lower percentile.
        high: Upper percentile.

    Returns:
        (lo, hi), float64 arrays of shape (bands,) with hi > lo.
    """
    bands = samples.shape[0]
    if np.dtype(dtype) == np.uint8:
        return np.zeros(bands), np.full(bands, 255.0)
    lo, hi = np.zeros(bands), np.ones(bands)
    for i in range(bands):
        band = np.asarray(samples[i], dtype=np.float64)
        band = band[np.isfinite(band)]
        if band.size == 0:
            continue  # no valid pixels: any range will do, everything is masked
        lo[i], hi[i] = np.percentile(band, [low, high])
        if hi[i] <= lo[i]:
            # Mostly one value (e.g. a sparse mask): fall back to the full range so the
            # few other values still show; a truly constant band gets a unit range.
            lo[i], hi[i] = band.min(), band.max()
            if hi[i] <= lo[i]:
                hi[i] = lo[i] + 1.0
    return lo, hi


def apply_stretch(data: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Map (3, H, W) values linearly from [lo, hi] to 0..255, clipping, as (H, W, 3) uint8.

    Args:
        data: Pixel values of any numeric type; NaN and inf become 0 (the reader marks
            them invalid).
        lo: Per-band value shown as 0.
        hi: Per-band value shown as 255.

    Returns:
        (H, W, 3) uint8 image.
    """
    bands, height, width = data.shape
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if data.dtype == np.uint8 and np.all(lo == 0) and np.all(hi == 255):
        return np.ascontiguousarray(np.moveaxis(data, 0, -1))  # identity: exact, no floats
    out = np.empty((height, width, bands), dtype=np.uint8)
    gain = 255.0 / np.maximum(hi - lo, np.finfo(np.float64).tiny)
    for b in range(bands):
        for r in range(0, height, _CHUNK_ROWS):
            # float64 subtraction first: large offsets (e.g. elevations) keep precision.
            v = (data[b, r : r + _CHUNK_ROWS].astype(np.float64) - lo[b]) * gain[b]
            v[~np.isfinite(v)] = 0.0
            out[r : r + _CHUNK_ROWS, :, b] = np.clip(np.rint(v), 0, 255).astype(np.uint8)
    return out
