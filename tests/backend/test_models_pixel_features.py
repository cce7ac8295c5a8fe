"""pixel_features: bands, indices, band summaries and NaN-aware neighbourhood statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rs_reasoner.models.pixel_features import (
    FeatureSpec,
    feature_names,
    local_stats,
    pixel_features,
    spectral_indices,
)
from rs_reasoner.raster import open_raster
from rs_reasoner.raster.band_roles import band_roles
from rs_reasoner.raster.band_stats import BandStats, read_bands


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, BandStats, dict[str, int]]:
    with open_raster(path) as ds:
        bands = list(range(1, ds.count + 1))
        raw, valid = read_bands(ds, bands)
        return raw, valid, BandStats.from_raster(ds), band_roles(ds, bands)


def test_local_stats_equal_a_direct_nan_aware_window_mean(shared_data: Path) -> None:
    raw, _, _, _ = _load(shared_data / "slovenia" / "slovenia_ndvi_68dates_utm33n.tif")
    values = raw[13]  # a date with ~10 % cloud (NaN)
    assert 0.02 < np.isnan(values).mean() < 0.5
    mean, std = local_stats(values, 5)
    for r, c in [(0, 0), (50, 50), (99, 3), (20, 97)]:  # corners see fewer neighbours
        window = values[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3]
        present = window[np.isfinite(window)]
        if present.size == 0:
            assert np.isnan(mean[r, c])
            continue
        assert mean[r, c] == pytest.approx(present.mean(), abs=1e-5)
        assert std[r, c] == pytest.approx(present.std(), abs=1e-4)


def test_rgb_photo_features(shared_data: Path) -> None:
    raw, valid, stats, roles = _load(shared_data / "neon_osbs_rgb_10cm_utm17n.tif")
    spec = FeatureSpec.for_bands(stats.count, roles)
    assert spec.context == "bands" and spec.index_names() == [
        "chroma_r", "chroma_g", "chroma_b", "exg", "grvi"
    ]  # fmt: skip
    feats = pixel_features(raw, valid, stats, spec)
    names = feature_names(stats, spec)
    assert feats.shape == (len(names), *valid.shape) and feats.dtype == np.float32
    assert names[:3] == ["band 1", "band 2", "band 3"]
    exg = feats[names.index("exg")]
    r, g, b = (raw[i].astype(np.float64) for i in range(3))
    total = r + g + b
    ok = valid & (total > 0)
    expected = (2 * g - r - b) / total
    np.testing.assert_allclose(exg[ok], expected[ok], rtol=1e-4, atol=1e-5)
    # Context features of band 1 at 9 px equal local_stats of the normalised band.
    norm = stats.normalise(raw, valid)
    mean9, _ = local_stats(norm[0], 9)
    np.testing.assert_allclose(feats[names.index("mean 9 band 1")][valid], mean9[valid])
    assert np.isnan(feats[:, ~valid]).all()


def test_many_bands_use_summary_context(shared_data: Path) -> None:
    raw, valid, stats, roles = _load(shared_data / "slovenia" / "slovenia_ndvi_68dates_utm33n.tif")
    spec = FeatureSpec.for_bands(stats.count, roles)
    assert spec.context == "summary" and spec.index_names() == []
    feats = pixel_features(raw, valid, stats, spec)
    names = feature_names(stats, spec)
    assert len(names) == 68 + 4 + 3 * 4 * 2 == feats.shape[0]
    # A pixel with clouded dates still has a finite band mean, over the dates it has.
    norm = stats.normalise(raw, valid)
    partly = valid & np.isnan(norm).any(axis=0) & np.isfinite(norm).any(axis=0)
    r, c = np.argwhere(partly)[0]
    mean = feats[names.index("band mean"), r, c]
    assert mean == pytest.approx(np.nanmean(norm[:, r, c]), abs=1e-5)
    assert feats[names.index("band max"), r, c] == pytest.approx(np.nanmax(norm[:, r, c]))


def test_normalised_differences_use_raw_values() -> None:
    raw = np.array([[[0.05, 0.10]], [[0.30, 0.10]]], np.float32)  # red, nir; 1x2 pixels
    spec = FeatureSpec({"red": 0, "nir": 1})
    assert spec.index_names() == ["ndvi"]
    (ndvi,) = spectral_indices(raw, spec)
    np.testing.assert_allclose(ndvi[0], [(0.30 - 0.05) / 0.35, 0.0], rtol=1e-6)


def test_spec_round_trip_and_checks() -> None:
    spec = FeatureSpec.for_bands(4, {"red": 2, "nir": 3}, (3, 9))
    assert FeatureSpec.from_dict(spec.to_dict()) == spec and spec.halo == 4
    with pytest.raises(ValueError, match="positive"):
        FeatureSpec.for_bands(4, {}, (0,))
    with pytest.raises(ValueError, match="unknown context"):
        FeatureSpec.from_dict({"context": "pixels"})
