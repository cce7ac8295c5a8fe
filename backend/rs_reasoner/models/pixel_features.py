"""Per-pixel features of the classical learner: bands, spectral indices, local statistics.

For every pixel:

* **bands**: each band, normalised (:class:`~rs_reasoner.raster.band_stats.BandStats`);
* **indices**: normalised differences where the band roles are known (NDVI, NDWI, MNDWI,
  NDBI from :func:`~rs_reasoner.raster.band_roles.band_roles`); for visible bands alone,
  chromatic coordinates, excess green (ExG) and the green-red difference, which separate
  vegetation, water and soil on RGB photos. Indices use raw values (they are ratios of
  reflectances; normalisation would shift them);
* **summary** (more than three bands): mean, spread, minimum and maximum over the bands of
  each pixel, e.g. the mean and range of an NDVI time series;
* **context**: mean and standard deviation over square neighbourhoods of a few sizes
  (:attr:`FeatureSpec.scales`) of every band and index, or of the summary for many bands
  (more than :data:`MAX_CONTEXT_BANDS`), so texture (roofs vs. trees) and surroundings
  count and the feature count stays bounded.

Missing values are kept missing: a band that is NaN at a pixel (a cloudy date) gives NaN
features there, and neighbourhood statistics average only the values present
(normalised convolution), so NoData never reads as a dark pixel. Invalid pixels get NaN
everywhere. Gradient-boosted trees route NaN like any other value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from rs_reasoner.raster.band_stats import BandStats

#: Default neighbourhood sides in pixels (odd).
DEFAULT_SCALES = (3, 9, 27)

#: Up to this many bands, each band gets context features; beyond, only the summary does.
MAX_CONTEXT_BANDS = 12

#: Normalised differences: name -> (role a, role b), index = (a - b) / (a + b).
_DIFFERENCES: dict[str, tuple[str, str]] = {
    "ndvi": ("nir", "red"),
    "ndwi": ("green", "nir"),
    "mndwi": ("green", "swir1"),
    "ndbi": ("swir1", "nir"),
}

_RGB = ("red", "green", "blue")

_EPS = 1e-6


@dataclass(frozen=True)
class FeatureSpec:
    """What :func:`pixel_features` computes; stored with the model.

    Attributes:
        roles: {role: position among the model's bands} (see ``band_roles``).
        scales: Neighbourhood sides in pixels for the context features.
        context: ``"bands"`` (each band and index) or ``"summary"`` (the summary values);
            default chosen by :meth:`for_bands`.
    """

    roles: Mapping[str, int] = field(default_factory=dict)
    scales: tuple[int, ...] = DEFAULT_SCALES
    context: str = "bands"

    @classmethod
    def for_bands(
        cls, count: int, roles: Mapping[str, int], scales: Sequence[int] = DEFAULT_SCALES
    ) -> FeatureSpec:
        """The default spec for ``count`` bands with these roles."""
        bad = [s for s in scales if int(s) < 1]
        if bad:
            raise ValueError(f"neighbourhood sizes must be positive, not {bad}")
        context = "bands" if count <= MAX_CONTEXT_BANDS else "summary"
        return cls(dict(roles), tuple(int(s) for s in scales), context)

    @property
    def halo(self) -> int:
        """Pixels of context a block needs on each side for exact features."""
        return max(self.scales, default=1) // 2

    def index_names(self) -> list[str]:
        """Names of the spectral indices computed."""
        names = [n for n, (a, b) in _DIFFERENCES.items() if a in self.roles and b in self.roles]
        if all(r in self.roles for r in _RGB):
            names += ["chroma_r", "chroma_g", "chroma_b", "exg", "grvi"]
        return names

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"roles": dict(self.roles), "scales": list(self.scales), "context": self.context}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`."""
        context = str(data.get("context", "bands"))
        if context not in ("bands", "summary"):
            raise ValueError(f"unknown context features {context!r}")
        roles = {str(k): int(v) for k, v in dict(data.get("roles") or {}).items()}
        return cls(roles, tuple(int(s) for s in data.get("scales", DEFAULT_SCALES)), context)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b), NaN where the sum is about zero."""
    total = a + b
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (a - b) / total
    out[~(np.abs(total) > _EPS)] = np.nan
    return out


def spectral_indices(raw: np.ndarray, spec: FeatureSpec) -> list[np.ndarray]:
    """The indices of :meth:`FeatureSpec.index_names`, from raw (B, H, W) float values."""
    roles = spec.roles
    out = [_ratio(raw[roles[a]], raw[roles[b]]) for n, (a, b) in _DIFFERENCES.items()
           if a in roles and b in roles]  # fmt: skip
    if all(r in roles for r in _RGB):
        r, g, b = (raw[roles[c]] for c in _RGB)
        total = r + g + b
        with np.errstate(invalid="ignore", divide="ignore"):
            chroma = [c / total for c in (r, g, b)]
        for c in chroma:
            c[~(np.abs(total) > _EPS)] = np.nan
        out += [*chroma, 2 * chroma[1] - chroma[0] - chroma[2], _ratio(g, r)]
    return out


def _summary(norm: np.ndarray) -> list[np.ndarray]:
    """Mean, standard deviation, minimum and maximum over bands (NaN-aware)."""
    present = np.isfinite(norm)
    count = present.sum(axis=0)
    filled = np.where(present, norm, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / count
        var = (filled**2).sum(axis=0) / count - mean**2
    std = np.sqrt(np.maximum(var, 0.0))
    low = np.where(present, norm, np.inf).min(axis=0)
    high = np.where(present, norm, -np.inf).max(axis=0)
    none = count == 0
    for a in (mean, std, low, high):
        a[none] = np.nan
    return [mean, std, low, high]


def local_stats(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over ``size`` x ``size`` neighbourhoods, ignoring NaN.

    Args:
        values: (H, W) float values, NaN where missing.
        size: Neighbourhood side in pixels.

    Returns:
        (mean, std), (H, W) float32 each; NaN where the neighbourhood has no value.
    """
    present = np.isfinite(values)
    weight = present.astype(np.float32)
    filled = np.where(present, values, 0.0).astype(np.float32)
    # Zero outside the array and at missing values, for both sums: a normalised
    # convolution, so borders and gaps average only the values that exist.
    mass = ndimage.uniform_filter(weight, size, mode="constant", cval=0.0)
    total = ndimage.uniform_filter(filled, size, mode="constant", cval=0.0)
    square = ndimage.uniform_filter(filled * filled, size, mode="constant", cval=0.0)
    empty = mass < 1e-3 / (size * size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / mass
        var = square / mass - mean * mean
    std = np.sqrt(np.maximum(var, 0.0))
    mean[empty] = np.nan
    std[empty] = np.nan
    return mean.astype(np.float32), std.astype(np.float32)


def feature_names(stats: BandStats, spec: FeatureSpec) -> list[str]:
    """Name of each feature channel of :func:`pixel_features`, in order."""
    names = list(stats.names) + spec.index_names()
    summary = ["band mean", "band std", "band min", "band max"] if stats.count > 3 else []
    base = names if spec.context == "bands" else summary + spec.index_names()
    context = [f"{stat} {size} {n}" for size in spec.scales for n in base
               for stat in ("mean", "std")]  # fmt: skip
    return names + summary + context


def pixel_features(
    raw: np.ndarray, valid: np.ndarray, stats: BandStats, spec: FeatureSpec
) -> np.ndarray:
    """Features of every pixel of an image (see the module docstring).

    Args:
        raw: (B, H, W) raw band values in ``stats.bands`` order, NaN where missing.
        valid: (H, W) bool, pixels with data.
        stats: The model's band normalisation.
        spec: Which features.

    Returns:
        (F, H, W) float32, channels named by :func:`feature_names`; NaN at invalid pixels.
    """
    raw = np.asarray(raw, dtype=np.float32)
    raw = np.where(valid[None], raw, np.nan)
    norm = stats.normalise(raw, valid)
    indices = spectral_indices(raw, spec)
    summary = _summary(norm) if stats.count > 3 else []
    base = [*norm, *indices] if spec.context == "bands" else [*summary, *indices]
    channels = [*norm, *indices, *summary]
    for size in spec.scales:
        for values in base:
            channels.extend(local_stats(values, size))
    out = np.stack(channels).astype(np.float32, copy=False)
    out[:, ~valid] = np.nan
    return out


__all__ = [
    "DEFAULT_SCALES",
    "MAX_CONTEXT_BANDS",
    "FeatureSpec",
    "feature_names",
    "local_stats",
    "pixel_features",
    "spectral_indices",
]
