"""In-memory multi-band images (raw values) as training tiles, normalised per band.

The band-count-agnostic counterpart of :class:`~rs_reasoner_training.data.dataset.ArraySource`
for benchmarks and tests: each image's raw values are scaled by the model's
:class:`~rs_reasoner.raster.band_stats.BandStats` and missing values (NaN: NoData, a
cloudy date) become 0, the value the band's 2nd percentile maps to; labels of invalid
pixels are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rs_reasoner.raster.band_stats import BandStats
from rs_reasoner_training.data.dataset import IGNORE_INDEX, Role, TileRef, TileSample, pad_window


def normalised_tile_image(raw: np.ndarray, valid: np.ndarray, stats: BandStats) -> np.ndarray:
    """(B, H, W) raw values as the (H, W, B) float32 image a network reads (no NaN)."""
    norm = stats.normalise(raw, valid)
    return np.ascontiguousarray(np.moveaxis(np.nan_to_num(norm, nan=0.0), 0, -1))


class BandArraySource:
    """Tiles of in-memory raw images (see the module docstring).

    Args:
        images: (B, H, W) raw band values, NaN where missing, in ``stats.bands`` order.
        valid: (H, W) bool per image.
        labels: Per role (``"train"``, ``"val"``), (H, W) uint8 labels per image
            (:data:`IGNORE_INDEX` where unlabelled), so training and held-out labels of one
            image can live in one source.
        stats: Band normalisation.
    """

    def __init__(
        self,
        images: list[np.ndarray],
        valid: list[np.ndarray],
        labels: Mapping[str, list[np.ndarray]],
        stats: BandStats,
    ) -> None:
        self.raw = images
        self.images = [
            normalised_tile_image(r, v, stats) for r, v in zip(images, valid, strict=True)
        ]
        self.valid = valid
        self.labels = {
            role: [
                np.where(v, lab, IGNORE_INDEX).astype(np.uint8)
                for v, lab in zip(valid, maps, strict=True)
            ]
            for role, maps in labels.items()
        }

    def read_raw(self, ref: TileRef, role: Role) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw values of a tile: ((B, H, W) float32, NaN where missing; valid; labels)."""
        raw = np.moveaxis(
            pad_window(np.moveaxis(self.raw[ref.source], 0, -1), ref.row, ref.col, ref.size,
                       np.nan), -1, 0
        )  # fmt: skip
        sample = self.read(ref, role)
        return np.ascontiguousarray(raw, dtype=np.float32), sample.valid, sample.label

    def read(self, ref: TileRef, role: Role) -> TileSample:
        """Read one tile (see :class:`~rs_reasoner_training.data.dataset.TileSource`)."""
        image = pad_window(self.images[ref.source], ref.row, ref.col, ref.size, 0.0)
        valid = pad_window(self.valid[ref.source], ref.row, ref.col, ref.size, False)
        if role == "unlabelled":
            label = np.full(valid.shape, IGNORE_INDEX, np.uint8)
        else:
            label = pad_window(
                self.labels[role][ref.source], ref.row, ref.col, ref.size, IGNORE_INDEX
            )
        return TileSample(image, label, valid)
