"""The Dubai aerial segmentation sample (MBRSC / Humans in the Loop, CC0) as arrays.

Layout: ``<root>/tile*/images/*.jpg`` with ``<root>/tile*/masks/*.png`` colour masks.
Mask colours map to labels in the TileResult convention (0 = background, k = class
``DUBAI_CLASSES[k - 1]``); Unlabeled and any stray colour map to :data:`IGNORE_INDEX`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rs_reasoner.segmenters.open_vocab.rs_zeroseg.loss import IGNORE_INDEX

#: Class synonyms, in label order (label k = DUBAI_CLASSES[k - 1]).
DUBAI_CLASSES: tuple[tuple[str, ...], ...] = (
    ("building",),
    ("land", "unpaved area"),
    ("road",),
    ("vegetation",),
    ("water",),
)
#: Mask colour → label (colours from the data README; the dataset's classes.json is wrong).
DUBAI_COLOURS: dict[tuple[int, int, int], int] = {
    (0x3C, 0x10, 0x98): 1,  # Building
    (0x84, 0x29, 0xF6): 2,  # Land (unpaved area)
    (0x6E, 0xC1, 0xE4): 3,  # Road
    (0xFE, 0xDD, 0x3A): 4,  # Vegetation
    (0xE2, 0xA9, 0x29): 5,  # Water
    (0x9B, 0x9B, 0x9B): IGNORE_INDEX,  # Unlabeled
}


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


def dubai_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) file pairs under ``root``, sorted by tile and name.

    Raises:
        FileNotFoundError: No pair found.
    """
    root = Path(root)
    pairs = []
    for image in sorted(root.glob("tile*/images/*.jpg")):
        mask = image.parent.parent / "masks" / f"{image.stem}.png"
        if mask.is_file():
            pairs.append((image, mask))
    if not pairs:
        raise FileNotFoundError(f"no Dubai tile*/images/*.jpg with masks under {root}")
    return pairs


def labels_from_colours(mask_rgb: np.ndarray) -> np.ndarray:
    """Colour mask (H, W, 3) → (H, W) uint8 labels; unknown colours are ignored."""
    rgb = mask_rgb.astype(np.uint32)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    labels = np.full(code.shape, IGNORE_INDEX, np.uint8)
    for (r, g, b), label in DUBAI_COLOURS.items():
        labels[code == ((r << 16) | (g << 8) | b)] = label
    return labels


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
    pairs = dubai_pairs(root)[::stride][:limit]
    samples = [load_pair(i, m) for i, m in pairs]
    return [center_crop_resize(s, size) for s in samples] if size else samples
