"""Per-band normalisation of a trained model, from robust statistics of its training raster.

A model trained on raw multispectral values needs the same scaling at serving time, on
other scenes too, so the scaling is measured once on the training raster and travels in
``model.json`` (:meth:`BandStats.to_dict`). It is a linear map per band that sends the
band's 2nd percentile to 0 and its 98th to 1, over valid pixels only (NoData, masked,
NaN and inf values excluded): unlike an 8-bit stretch it keeps the full precision of
uint16 / float data and does not clip, and outliers (clouds, saturated pixels) barely
move it.

At serving time :meth:`BandStats.check_raster` refuses a raster that lacks the model's
bands, with the bands it needs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from rs_reasoner.errors import InvalidRequestError

#: Percentiles mapped to 0 and 1.
LOW_PERCENTILE, HIGH_PERCENTILE = 2.0, 98.0

#: Long side of the decimated read the statistics come from (about a million pixels).
STATS_SIZE = 1024

#: Normalised values are clipped to this range, so a saturated or corrupt pixel cannot
#: dominate a network's input (trees do not care).
CLIP = (-4.0, 5.0)


def band_names(ds: rasterio.DatasetReader, bands: Sequence[int]) -> list[str]:
    """Display name of each band: its description, else ``"band N"``."""
    descriptions = ds.descriptions
    return [(descriptions[b - 1] or "").strip() or f"band {b}" for b in bands]


@dataclass(frozen=True)
class BandStats:
    """The bands a model reads and how each is scaled.

    Attributes:
        bands: 1-based raster band numbers, in the model's input order.
        names: Name of each band (raster description or ``"band N"``).
        low: Value of each band mapped to 0 (2nd percentile of the training raster).
        high: Value mapped to 1 (98th percentile); always above ``low``.
        dtype: Data type of the training raster (for messages).
    """

    bands: tuple[int, ...]
    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    dtype: str = "float32"

    @classmethod
    def from_samples(
        cls,
        samples: np.ndarray,
        bands: Sequence[int],
        names: Sequence[str] | None = None,
        dtype: str | np.dtype = "float32",
    ) -> BandStats:
        """Statistics of (bands, N) pixel values (non-finite values are ignored per band).

        Args:
            samples: Valid pixels' values, one row per band.
            bands: Band number of each row.
            names: Band names (default ``"band N"``).
            dtype: The raster's data type.

        Returns:
            The statistics; a band without valid samples gets the unit range [0, 1], a
            constant band a unit-wide range starting at its value.
        """
        samples = np.asarray(samples)
        if samples.ndim != 2 or samples.shape[0] != len(bands):
            raise ValueError(f"samples {samples.shape} do not match {len(bands)} bands")
        low, high = [], []
        for row in samples:
            v = np.asarray(row, dtype=np.float64)
            v = v[np.isfinite(v)]
            lo, hi = (
                (0.0, 1.0) if v.size == 0 else np.percentile(v, [LOW_PERCENTILE, HIGH_PERCENTILE])
            )
            if v.size and hi <= lo:
                # Mostly one value: the full range, so the few others still differ.
                lo, hi = float(v.min()), float(v.max())
                if hi <= lo:
                    hi = lo + 1.0
            low.append(float(lo))
            high.append(float(hi))
        names = list(names) if names is not None else [f"band {b}" for b in bands]
        return cls(
            tuple(int(b) for b in bands),
            tuple(names),
            tuple(low),
            tuple(high),
            str(np.dtype(dtype)),
        )

    @classmethod
    def from_raster(
        cls, ds: rasterio.DatasetReader, bands: Sequence[int] | None = None
    ) -> BandStats:
        """Statistics of a raster's valid pixels, from a decimated read (nearest sample).

        Args:
            ds: The open raster.
            bands: 1-based bands (default: all bands).

        Returns:
            The statistics.

        Raises:
            InvalidRequestError: A band number the raster lacks.
        """
        bands = list(range(1, ds.count + 1)) if bands is None else [int(b) for b in bands]
        check_band_numbers(bands, ds.count)
        factor = max(1.0, max(ds.height, ds.width) / STATS_SIZE)
        shape = (max(1, round(ds.height / factor)), max(1, round(ds.width / factor)))
        data, valid = read_bands(ds, bands, out_shape=shape)
        dtype = np.result_type(*[ds.dtypes[b - 1] for b in bands])
        return cls.from_samples(data[:, valid], bands, band_names(ds, bands), dtype)

    @property
    def count(self) -> int:
        """Number of bands."""
        return len(self.bands)

    def normalise(self, data: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Scale raw values band by band: ``(x - low) / (high - low)``, clipped to :data:`CLIP`.

        Args:
            data: (bands, H, W) raw values, in :attr:`bands` order.
            valid: (H, W) bool, or None; invalid pixels become NaN in every band.

        Returns:
            (bands, H, W) float32; NaN where the input is not finite or the pixel invalid.
        """
        if data.shape[0] != self.count:
            raise ValueError(f"{data.shape[0]} bands given, the statistics have {self.count}")
        low = np.asarray(self.low, dtype=np.float64)[:, None, None]
        span = (np.asarray(self.high, dtype=np.float64) - self.low)[:, None, None]
        # float64 subtraction first: large offsets (e.g. elevations) keep their precision.
        out = ((data.astype(np.float64) - low) / span).astype(np.float32)
        np.clip(out, *CLIP, out=out)  # NaN stays NaN
        if valid is not None:
            out[:, ~valid] = np.nan
        return out

    def check_raster(self, ds: rasterio.DatasetReader, model_name: str = "the model") -> list[str]:
        """Refuse a raster without the model's bands; notes on bands named differently.

        Args:
            ds: The raster to segment.
            model_name: For messages.

        Returns:
            Notes for the user (bands whose descriptions differ from the training raster's).

        Raises:
            InvalidRequestError: The raster has fewer bands than the model reads.
        """
        needed = max(self.bands)
        if ds.count < needed:
            shown = ", ".join(self.names[:4]) + (", ..." if self.count > 4 else "")
            raise InvalidRequestError(
                f"{model_name} reads {self.count} band(s) ({shown}; band numbers up to "
                f"{needed}), but this raster has {ds.count}.",
                f"Segment a raster with the same {needed} bands as the training raster "
                "(same sensor and band order), or train a model on this raster's bands.",
            )
        notes = []
        names = band_names(ds, self.bands)
        for band, trained, here in zip(self.bands, self.names, names, strict=True):
            generic = {trained, here} & {f"band {band}"}
            if not generic and trained.lower() != here.lower():
                notes.append(f"Band {band} is {here!r} here but was {trained!r} in training.")
        return notes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``model.json``)."""
        return {
            "bands": list(self.bands),
            "names": list(self.names),
            "low": list(self.low),
            "high": list(self.high),
            "dtype": self.dtype,
            "method": f"percentiles {LOW_PERCENTILE:g}-{HIGH_PERCENTILE:g} -> 0-1",
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BandStats:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: Missing fields, lengths that differ, or a range that is not
                increasing.
        """
        try:
            bands = tuple(int(b) for b in data["bands"])
            low = tuple(float(v) for v in data["low"])
            high = tuple(float(v) for v in data["high"])
            names = tuple(str(n) for n in data.get("names") or [f"band {b}" for b in bands])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid band statistics: {exc}") from None
        if not bands or not len(bands) == len(low) == len(high) == len(names):
            raise ValueError("band statistics: bands, names, low and high differ in length")
        if any(
            not (math.isfinite(lo) and math.isfinite(hi) and hi > lo)
            for lo, hi in zip(low, high, strict=True)
        ):
            raise ValueError("band statistics: every band needs finite low < high")
        return cls(bands, names, low, high, str(data.get("dtype", "float32")))


def check_band_numbers(bands: Sequence[int], count: int) -> None:
    """Refuse band numbers outside 1..count (one clear message)."""
    if not bands:
        raise InvalidRequestError("No band was chosen.", f"Choose bands between 1 and {count}.")
    bad = [b for b in bands if not 1 <= b <= count]
    if bad:
        raise InvalidRequestError(
            f"Band(s) {bad} do not exist: the raster has {count} band(s).",
            f"Choose band numbers between 1 and {count}.",
        )


def read_bands(
    ds: rasterio.DatasetReader,
    bands: Sequence[int],
    window: rasterio.windows.Window | None = None,
    out_shape: tuple[int, int] | None = None,
    resampling: Resampling = Resampling.nearest,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw values of some bands and the pixels that hold data.

    A pixel is valid where any band has data (GDAL's dataset-mask rule) and at least one
    band value is finite; bands keep their own NaN (a cloudy date of a time series) so
    learners can treat a missing value as missing.

    Args:
        ds: The raster.
        bands: 1-based band numbers.
        window: Source window (default: the whole raster).
        out_shape: (rows, cols) to read into (decimation), default the window's size.
        resampling: How pixels are sampled when decimating.

    Returns:
        (bands, H, W) float32 values (NaN where a band has no data), (H, W) bool valid.
    """
    bands = [int(b) for b in bands]
    shape = None if out_shape is None else (len(bands), *out_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        data = ds.read(
            bands, window=window, out_shape=shape, resampling=resampling, out_dtype="float32"
        )
        masks = ds.read_masks(bands, window=window, out_shape=shape, resampling=Resampling.nearest)
    band_ok = (masks > 0) & np.isfinite(data)
    data[~band_ok] = np.nan
    return data, band_ok.any(axis=0)


__all__ = [
    "CLIP",
    "HIGH_PERCENTILE",
    "LOW_PERCENTILE",
    "BandStats",
    "band_names",
    "check_band_numbers",
    "read_bands",
]
