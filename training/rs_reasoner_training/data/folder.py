"""Image folder + mask folder as training data (e.g. the Dubai sample).

Masks are colour-coded (RGB or palette PNGs; a colour -> class table) or index masks
(pixel value -> class). Class ids follow the order of the table given (ignored colours or
values become :data:`IGNORE_INDEX`, as do colours not in the table). Images without a mask
are unlabelled. Validation holds out whole images; the label budget keeps a fraction of
the remaining images labelled and moves the rest to the unlabelled pool.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rs_reasoner.schemas import TRAIN_DEFAULTS
from rs_reasoner_training.data.dataset import (
    IGNORE_INDEX,
    Role,
    TileDataset,
    TileRef,
    TileSample,
    TrainingData,
    grid_refs,
    pad_window,
)
from rs_reasoner_training.errors import LabelLayerError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}

#: Dubai sample (Humans in the Loop / MBRSC) classes; ids in this order.
DUBAI_COLOURS: dict[str, str] = {
    "Building": "#3C1098",
    "Land": "#8429F6",
    "Road": "#6EC1E4",
    "Vegetation": "#FEDD3A",
    "Water": "#E2A929",
}


def hex_rgb(colour: str | Sequence[int]) -> tuple[int, int, int]:
    """'#RRGGBB' (or an (r, g, b) sequence) as an int triple."""
    if isinstance(colour, str):
        text = colour.lstrip("#")
        if len(text) != 6:
            raise LabelLayerError(f"Colour {colour!r} is not #RRGGBB.", "Write e.g. #3C1098.")
        return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
    r, g, b = colour
    return int(r), int(g), int(b)


@dataclass(frozen=True)
class MaskTable:
    """How mask pixels map to class ids.

    Attributes:
        class_names: Class of each id.
        colours: RGB colour of each class (colour masks), or None.
        values: Mask value of each class (index masks), or None.
    """

    class_names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...] | None = None
    values: tuple[int, ...] | None = None
    #: Colours or values that mark "no label" (decoded as IGNORE_INDEX, like unlisted ones,
    #: but known: :meth:`unknown_codes` does not report them).
    ignored: tuple[tuple[int, int, int] | int, ...] = ()

    @classmethod
    def from_colours(cls, colours: Mapping[str, str | Sequence[int]]) -> MaskTable:
        """Colour masks: {class name: colour}; other colours are ignored."""
        if len(colours) < 2:
            raise LabelLayerError("Give at least two classes.", "Training needs two or more.")
        return cls(tuple(colours), colours=tuple(hex_rgb(c) for c in colours.values()))

    @classmethod
    def from_values(cls, values: Mapping[int, str]) -> MaskTable:
        """Index masks: {pixel value: class name}; other values are ignored."""
        if len(values) < 2:
            raise LabelLayerError("Give at least two classes.", "Training needs two or more.")
        return cls(tuple(values.values()), values=tuple(int(v) for v in values))

    @staticmethod
    def _code(key: tuple[int, int, int] | int) -> int:
        """A colour packed as 0xRRGGBB (values stay as they are)."""
        if isinstance(key, tuple):
            r, g, b = key
            return (r << 16) | (g << 8) | b
        return int(key)

    @property
    def codes(self) -> list[int]:
        """Mask code of each class id (packed colours, or values)."""
        return [self._code(k) for k in (self.colours or self.values or ())]

    def decode(self, mask: Image.Image) -> np.ndarray:
        """A mask image as (H, W) uint8 class ids (IGNORE_INDEX elsewhere)."""
        if self.colours is not None:
            rgb = np.asarray(mask.convert("RGB"), dtype=np.uint32)
            key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        else:
            key = np.asarray(mask if mask.mode in ("P", "L", "I", "I;16") else mask.convert("L"))
            if key.ndim != 2:
                raise LabelLayerError("Index masks must have one band.", "Give a class-id PNG.")
        return self.decode_codes(key)

    def decode_codes(self, key: np.ndarray) -> np.ndarray:
        """(H, W) mask codes (packed colours or values) as uint8 class ids."""
        out = np.full(key.shape, IGNORE_INDEX, dtype=np.uint8)
        for class_id, code in enumerate(self.codes):
            out[key == code] = class_id
        return out

    def unknown_codes(self, key: np.ndarray) -> list[tuple[int, int]]:
        """(code, pixel count) of the codes in ``key`` that are neither a class nor ignored."""
        known = np.asarray(self.codes + [self._code(k) for k in self.ignored], dtype=np.int64)
        codes, counts = np.unique(key, return_counts=True)
        extra = ~np.isin(codes, known)
        return [(int(c), int(n)) for c, n in zip(codes[extra], counts[extra], strict=True)]


def pair_files(
    images: str | os.PathLike[str], masks: str | os.PathLike[str]
) -> list[tuple[Path, Path | None]]:
    """Pair images with masks of the same file stem (masks may have another suffix).

    Args:
        images: Folder of images.
        masks: Folder of masks.

    Returns:
        (image, mask or None) pairs sorted by image name.
    """
    img_dir, mask_dir = Path(images), Path(masks)
    for d, what in ((img_dir, "image"), (mask_dir, "mask")):
        if not d.is_dir():
            raise LabelLayerError(f"The {what} folder does not exist: {d}", "Check the path.")
    mask_by_stem = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = [
        (p, mask_by_stem.get(p.stem))
        for p in sorted(img_dir.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not pairs:
        raise LabelLayerError(f"No images in {img_dir}.", "Give a folder of JPEG/PNG/TIFF images.")
    if not any(m for _, m in pairs):
        raise LabelLayerError(
            f"No image in {img_dir} has a mask of the same name in {mask_dir}.",
            "Masks must share the image's file name (any image suffix).",
        )
    return pairs


def dubai_pairs(root: str | os.PathLike[str]) -> list[tuple[Path, Path | None]]:
    """Image/mask pairs of the Dubai sample (``root/tile*/{images,masks}``)."""
    tiles = sorted(p for p in Path(root).glob("*") if (p / "images").is_dir())
    if not tiles:
        raise LabelLayerError(f"No tile*/images folders in {root}.", "Point to the dubai folder.")
    return [pair for t in tiles for pair in pair_files(t / "images", t / "masks")]


class FolderSource:
    """Decoded images and masks, held in memory after the first read (small datasets).

    Args:
        pairs: (image, mask or None) paths.
        table: Mask decoding.
        downscale: Integer factor to shrink images (area) and masks (nearest) by.
    """

    def __init__(
        self, pairs: list[tuple[Path, Path | None]], table: MaskTable, downscale: int = 1
    ) -> None:
        self.pairs = pairs
        self.table = table
        self.downscale = max(1, int(downscale))
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def shape(self, index: int) -> tuple[int, int]:
        """(rows, cols) of image ``index`` after downscaling (reads only the header)."""
        with Image.open(self.pairs[index][0]) as im:
            w, h = im.size
        return h // self.downscale, w // self.downscale

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8, label (H, W) uint8) of one image, cached."""
        if index not in self._cache:
            img_path, mask_path = self.pairs[index]
            d = self.downscale
            with Image.open(img_path) as im:
                full_w, full_h = im.size
                h, w = full_h // d, full_w // d
                rgb = im.convert("RGB")
                if d > 1:
                    rgb = rgb.resize((w, h), Image.Resampling.BOX)
                image = np.asarray(rgb, dtype=np.uint8)
            if mask_path is None:
                label = np.full((h, w), IGNORE_INDEX, np.uint8)
            else:
                with Image.open(mask_path) as m:
                    label = self.table.decode(m)
                if label.shape != (full_h, full_w):
                    raise LabelLayerError(
                        f"Mask {mask_path.name} is {label.shape[1]}x{label.shape[0]} pixels but "
                        f"its image is {full_w}x{full_h}.",
                        "Masks must have their image's size.",
                    )
                # Nearest (centre) sample: class ids must not be averaged.
                label = np.ascontiguousarray(label[d // 2 :: d, d // 2 :: d][:h, :w])
            self._cache[index] = (image, label)
        return self._cache[index]

    def read(self, ref: TileRef, role: Role) -> TileSample:
        """Read one tile (see :class:`~rs_reasoner_training.data.dataset.TileSource`)."""
        image, label = self.load(ref.source)
        valid = pad_window(np.ones(image.shape[:2], bool), ref.row, ref.col, ref.size, False)
        tile = pad_window(image, ref.row, ref.col, ref.size, 0)
        if role == "unlabelled":
            lab = np.full(valid.shape, IGNORE_INDEX, np.uint8)
        else:
            lab = pad_window(label, ref.row, ref.col, ref.size, IGNORE_INDEX)
        return TileSample(tile, lab, valid)


def split_images(
    pairs: Sequence[tuple[Path, Path | None]],
    val_fraction: float,
    label_budget: float,
    seed: int | None,
) -> tuple[list[int], list[int], list[int]]:
    """Indexes of the labelled, held-out and unlabelled images.

    Args:
        pairs: (image, mask or None) pairs.
        val_fraction: Fraction of masked images held out whole (at least one when > 0,
            never all).
        label_budget: Fraction of the other masked images whose masks are used (at least
            one); the rest join the mask-less images as unlabelled.
        seed: Seed of the order images are taken in (None: the given order).

    Raises:
        LabelLayerError: Fractions out of range, or too few masked images.
    """
    if not 0 < label_budget <= 1:
        raise LabelLayerError(
            f"The label budget must be in (0, 1], not {label_budget}.", "E.g. 0.1."
        )
    if not 0 <= val_fraction < 1:
        raise LabelLayerError(
            f"The validation fraction must be in [0, 1), not {val_fraction}.", "E.g. 0.2."
        )
    order = list(range(len(pairs)))
    if seed is not None:
        order = [int(i) for i in np.random.default_rng(seed).permutation(len(pairs))]
    masked = [i for i in order if pairs[i][1] is not None]
    if len(masked) < (2 if val_fraction > 0 else 1):
        raise LabelLayerError(
            f"{len(masked)} image(s) with masks: too few for training and validation.",
            "Add masks, or set the validation fraction to 0.",
        )
    n_val = math.ceil(val_fraction * len(masked) - 1e-9) if val_fraction > 0 else 0
    n_val = min(n_val, len(masked) - 1)
    val_imgs, rest = masked[:n_val], masked[n_val:]
    n_lab = max(1, math.ceil(label_budget * len(rest) - 1e-9))
    unlab_imgs = rest[n_lab:] + [i for i in order if pairs[i][1] is None]
    return rest[:n_lab], val_imgs, unlab_imgs


def folder_training_data(
    pairs: list[tuple[Path, Path | None]],
    table: MaskTable,
    *,
    tile_size: int = TRAIN_DEFAULTS["tile_size"],
    val_fraction: float = TRAIN_DEFAULTS["val_fraction"],
    label_budget: float = TRAIN_DEFAULTS["label_budget"],
    seed: int = TRAIN_DEFAULTS["seed"],
    downscale: int = 1,
    max_images: int | None = None,
) -> TrainingData:
    """Training data from image/mask pairs.

    Args:
        pairs: (image, mask or None) pairs (:func:`pair_files`, :func:`dubai_pairs`).
        table: Mask decoding and class names.
        tile_size: Tile side (images are cut into padded, non-overlapping tiles).
        val_fraction: Fraction of masked images held out whole (at least one when > 0).
        label_budget: Fraction of the other masked images used as labelled (at least one);
            the rest join the unlabelled pool with the mask-less images.
        seed: Seed of the split and the budget.
        downscale: Integer factor to shrink images by (fast experiments).
        max_images: Use only the first N pairs in a seeded shuffle (fast experiments).

    Returns:
        The datasets, class names and a summary.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    if max_images is not None:
        order = order[:max_images]
    chosen = [pairs[i] for i in order]
    source = FolderSource(chosen, table, downscale)
    # Already shuffled: the split takes the images in this order.
    lab_imgs, val_imgs, unlab_imgs = split_images(chosen, val_fraction, label_budget, None)

    def refs(images: list[int]) -> list[TileRef]:
        return [r for i in images for r in grid_refs(i, *source.shape(i), tile_size)]

    summary = {
        "source": "folder",
        "tile_size": tile_size,
        "images": {"train": len(lab_imgs), "val": len(val_imgs), "unlabelled": len(unlab_imgs)},
        "train_images": [str(chosen[i][0]) for i in lab_imgs],
        "val_images": [str(chosen[i][0]) for i in val_imgs],
        "notes": [],
    }
    return TrainingData(
        class_names=list(table.class_names),
        labelled=TileDataset(source, refs(lab_imgs), "train"),
        unlabelled=TileDataset(source, refs(unlab_imgs), "unlabelled") if unlab_imgs else None,
        val=TileDataset(source, refs(val_imgs), "val") if val_imgs else None,
        summary=summary,
    )


def dubai_training_data(root: str | os.PathLike[str], **kwargs) -> TrainingData:
    """The Dubai sample with its colour table (Unlabeled -> ignore); see
    :func:`folder_training_data` for the options."""
    colours = dict(DUBAI_COLOURS)
    return folder_training_data(dubai_pairs(root), MaskTable.from_colours(colours), **kwargs)
