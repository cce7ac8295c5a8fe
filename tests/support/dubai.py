"""The Dubai aerial sample (MBRSC / Humans in the Loop, CC0) as arrays, for the RS-ZeroSeg
model tests: labels in the TileResult convention (0 = background, k = class
``DUBAI_CLASSES[k - 1]``); Unlabeled and stray colours are :data:`IGNORE_INDEX`. Files and
colours come from the training package's folder reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rs_reasoner.segmenters.open_vocab.rs_zeroseg.loss import IGNORE_INDEX
from rs_reasoner_training.data.folder import DUBAI_COLOURS, MaskTable, dubai_pairs

_TABLE = MaskTable.from_colours(DUBAI_COLOURS)  # ids 0..4 in DUBAI_CLASSES order

#: Class synonyms, in label order (label k = DUBAI_CLASSES[k - 1]).
DUBAI_CLASSES: tuple[tuple[str, ...], ...] = (
    ("building",),
    ("land", "unpaved area"),
    ("road",),
    ("vegetation",),
    ("water",),
)


@dataclass
class DubaiSample:
    """One image with its labels.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) uint8 labels (0..5, :data:`IGNORE_INDEX`).
        path: The image file.
    """

    image: np.ndarray
    labels: np.ndarray
    path: Path


def labels_from_colours(mask_rgb: np.ndarray) -> np.ndarray:
    """Colour mask (H, W, 3) → (H, W) uint8 labels; unknown colours are ignored."""
    ids = _TABLE.decode(Image.fromarray(np.ascontiguousarray(mask_rgb, dtype=np.uint8)))
    return np.where(ids == IGNORE_INDEX, IGNORE_INDEX, ids + 1).astype(np.uint8)


def load_pair(image_path: str | Path, mask_path: str | Path) -> DubaiSample:
    """Read one image and its mask (mask resized with nearest if sizes differ by a pixel)."""
    image = Image.open(image_path).convert("RGB")
    mask = Image.open(mask_path).convert("RGB")
    if mask.size != image.size:
        mask = mask.resize(image.size, Image.NEAREST)
    return DubaiSample(np.array(image), labels_from_colours(np.asarray(mask)), Path(image_path))


def center_crop_resize(sample: DubaiSample, size: int) -> DubaiSample:
    """Largest centred square, resized to ``size`` (bilinear image, nearest labels)."""
    h, w = sample.labels.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    box = (left, top, left + s, top + s)
    image = Image.fromarray(sample.image).crop(box).resize((size, size), Image.BILINEAR)
    labels = Image.fromarray(sample.labels).crop(box).resize((size, size), Image.NEAREST)
    return DubaiSample(np.array(image), np.array(labels), sample.path)


def load_dubai(
    root: str | Path, size: int | None = None, limit: int | None = None, stride: int = 1
) -> list[DubaiSample]:
    """Load Dubai samples.

    Args:
        root: The ``dubai`` folder.
        size: Centre-crop and resize each sample to ``size`` × ``size``; None keeps it.
        limit: Keep at most this many samples.
        stride: Take every ``stride``-th pair (spreads a small sample over the tiles).

    Returns:
        The samples.
    """
    pairs = [(i, m) for i, m in dubai_pairs(root) if m is not None][::stride][:limit]
    samples = [load_pair(i, m) for i, m in pairs]
    return [center_crop_resize(s, size) for s in samples] if size else samples
