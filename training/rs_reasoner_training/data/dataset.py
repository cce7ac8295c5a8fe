"""The dataset interface every training source produces: fixed-size tiles as tensors.

A *source* knows how to read one tile (image, label, valid mask) given a :class:`TileRef`
and a role (``"train"``, ``"val"`` or ``"unlabelled"``); :class:`TileDataset` turns a
source and a list of refs into a torch dataset. Parcel rasters, image folders and
in-memory arrays all end up as a :class:`TrainingData`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

#: Label value of pixels that carry no label (not in any parcel, nodata, padding).
IGNORE_INDEX = 255

Role = Literal["train", "val", "unlabelled"]


@dataclass(frozen=True)
class TileRef:
    """One square tile: ``size`` pixels from (row, col) of image ``source``.

    Tiles may run past the image edge; the missing part is padded (image 0, label
    ignore, valid False), so tiles never overlap and never need resampling.
    """

    source: int
    row: int
    col: int
    size: int


@dataclass
class TileSample:
    """A tile as read from its source.

    Attributes:
        image: (H, W, 3) uint8 RGB, or (H, W, B) float32 normalised bands (no NaN).
        label: (H, W) uint8 class ids, :data:`IGNORE_INDEX` where unlabelled.
        valid: (H, W) bool, False on padding and nodata.
    """

    image: np.ndarray
    label: np.ndarray
    valid: np.ndarray


class TileSource(Protocol):
    """Reads tiles; implemented by the raster/parcel, folder and array sources."""

    def read(self, ref: TileRef, role: Role) -> TileSample:
        """Read one tile; unlabelled roles return an all-ignore label."""
        ...


def pad_window(array: np.ndarray, row: int, col: int, size: int, fill: Any) -> np.ndarray:
    """Cut a ``size`` x ``size`` window from an (H, W, ...) array, padding past the edges.

    Args:
        array: Source array, rows and columns first.
        row: Top row of the window (may be negative).
        col: Left column of the window (may be negative).
        size: Window side in pixels.
        fill: Value of padded pixels.

    Returns:
        The window, same dtype and trailing dimensions as ``array``.
    """
    out = np.full((size, size) + array.shape[2:], fill, dtype=array.dtype)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + size, array.shape[0]), min(col + size, array.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - row : r1 - row, c0 - col : c1 - col] = array[r0:r1, c0:c1]
    return out


def grid_refs(source: int, height: int, width: int, size: int) -> list[TileRef]:
    """Non-overlapping tiles covering an image (the last row/column padded).

    Args:
        source: Image index stored in each ref.
        height: Image height in pixels.
        width: Image width in pixels.
        size: Tile side.

    Returns:
        Tiles in row-major order.
    """
    return [
        TileRef(source, r, c, size) for r in range(0, height, size) for c in range(0, width, size)
    ]


class TileDataset(Dataset):
    """Tiles of one role as tensors.

    Items are dicts: ``image`` float32 (C, H, W) (uint8 RGB scaled to [0, 1], float bands
    as read), ``label`` int64 (H, W) with :data:`IGNORE_INDEX`, ``valid`` bool (H, W).

    Args:
        source: Where tiles are read from.
        refs: The tiles.
        role: ``"train"``, ``"val"`` or ``"unlabelled"``.
    """

    def __init__(self, source: TileSource, refs: list[TileRef], role: Role) -> None:
        self.source = source
        self.refs = list(refs)
        self.role = role

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.source.read(self.refs[index], self.role)
        image = torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1)
        label = torch.from_numpy(sample.label.astype(np.int64))
        valid = torch.from_numpy(sample.valid.astype(bool))
        image = image.float() / 255.0 if sample.image.dtype == np.uint8 else image.float()
        return {"image": image, "label": label, "valid": valid}


class ArraySource:
    """In-memory images and label maps (tests, benchmarks, already-loaded data).

    Args:
        images: (H, W, 3) uint8 arrays.
        labels: (H, W) uint8 label maps (IGNORE_INDEX where unlabelled), one per image.
    """

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray]) -> None:
        self.images = images
        self.labels = labels

    def read(self, ref: TileRef, role: Role) -> TileSample:
        """Read one tile (see :class:`TileSource`)."""
        img = self.images[ref.source]
        valid = pad_window(np.ones(img.shape[:2], bool), ref.row, ref.col, ref.size, False)
        image = pad_window(img, ref.row, ref.col, ref.size, 0)
        if role == "unlabelled":
            label = np.full(valid.shape, IGNORE_INDEX, np.uint8)
        else:
            label = pad_window(self.labels[ref.source], ref.row, ref.col, ref.size, IGNORE_INDEX)
        return TileSample(image, label, valid)


@dataclass
class TrainingData:
    """Everything the training loop needs from a data source.

    Attributes:
        class_names: Class of each label id (id = position).
        labelled: Training tiles with labels.
        unlabelled: Training tiles without labels (None: supervised only).
        val: Held-out tiles (None: no validation, e.g. ``val_fraction=0``).
        summary: Counts and notes to show the user (tiles, parcels, warnings); with
            normalised bands, ``band_stats`` (``BandStats.to_dict()``), which checkpoints
            and ``model.json`` keep for serving.
    """

    class_names: list[str]
    labelled: TileDataset
    unlabelled: TileDataset | None = None
    val: TileDataset | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        """Channels of the images: the bands of ``summary["band_stats"]``, else RGB's 3."""
        stats = self.summary.get("band_stats")
        return len(stats["bands"]) if stats else 3
