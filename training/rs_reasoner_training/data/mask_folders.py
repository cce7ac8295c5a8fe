"""A folder of images and a folder of masks as training data, as ``rs-reasoner train
--images DIR --masks DIR --classes FILE`` reads them.

* **Class table file** (:func:`read_class_table`): one ``KEY,NAME`` line per mask value,
  ``KEY`` an integer pixel value (class-id masks) or ``#RRGGBB`` (colour masks, RGB or
  palette); ``NAME`` ``-`` marks a value to ignore (unlabelled, no data). Blank lines and
  an optional ``value,name`` header are skipped. Class ids follow the file's order.
* **Pairing** (:func:`match_folders`): a mask belongs to the image with the same file stem
  (any image suffix); images without a mask are unlabelled; a mask without an image is an
  error (a typo in a name would otherwise drop its labels silently).
* **Checks before training**: a mask of another size than its image, a georeferenced mask
  not on its image's grid, a mask value the class table does not list, images with other
  bands than the first: one error each, naming the file and what to fix.
* **Bands**: every band of each image (or the ``bands`` chosen), raw values read with
  GDAL, so 8-bit JPEGs, 16-bit GeoTIFFs and multispectral stacks alike are normalised
  per band by robust statistics of the training images (``summary["band_stats"]``),
  recorded with the model and applied again when it segments. Georeferenced images keep
  their CRS for segmenting; plain PNG/JPEG folders work the same (pixel space).

Validation holds out whole images (see :func:`~rs_reasoner_training.data.folder.split_images`).
"""

from __future__ import annotations

import csv
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from rs_reasoner.raster.band_roles import band_roles
from rs_reasoner.raster.band_stats import BandStats, band_names, check_band_numbers, read_bands
from rs_reasoner.schemas import TRAIN_DEFAULTS
from rs_reasoner_training.data.band_arrays import normalised_tile_image
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
from rs_reasoner_training.data.folder import IMAGE_SUFFIXES, MaskTable, hex_rgb, split_images
from rs_reasoner_training.errors import LabelLayerError

#: Name that marks a mask value as "no label" in the class table file.
IGNORE_NAME = "-"
#: Pixels sampled per image for the band statistics (a decimated read).
_STATS_SIDE = 256
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def _table_rows(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(key, name) of each ``KEY,NAME`` line of a class table file, in file order.

    Raises:
        LabelLayerError: Unreadable file, a line that is not ``KEY,NAME``, a key or a
            class name twice.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LabelLayerError(
            f"Cannot read the class table {file}: {exc.strerror or exc}.",
            "Give a text file with one 'VALUE,NAME' or '#RRGGBB,NAME' line per class.",
        ) from None
    lines = enumerate(csv.reader(text.splitlines()), 1)
    rows = [(n, r) for n, r in lines if any(c.strip() for c in r)]
    if rows and rows[0][1][0].strip().lower() in ("value", "colour", "color", "key"):
        rows = rows[1:]  # a header line
    out: list[tuple[str, str]] = []
    for number, row in rows:
        cells = [c.strip() for c in row]
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise LabelLayerError(
                f"Line {number} of {file.name} is not 'KEY,NAME': {','.join(row)!r}.",
                "Write one 'VALUE,NAME' (class-id masks) or '#RRGGBB,NAME' (colour masks) "
                f"line per class; NAME '{IGNORE_NAME}' ignores the value.",
            )
        key, name = cells
        if key.upper() in {k.upper() for k, _ in out}:
            raise LabelLayerError(f"{key} is listed twice in {file.name}.",
                                  "List each value once.")  # fmt: skip
        if name != IGNORE_NAME and name in {n for _, n in out}:
            raise LabelLayerError(
                f"Class {name!r} is listed twice in {file.name}.",
                "Give each class one line (merge its values into one in the labels).",
            )
        out.append((key, name))
    return out


def read_class_names(path: str | os.PathLike[str]) -> dict[str, str]:
    """A class table file as {value text: class name} (``-``: leave out), in file order:
    the names of a class field's values (e.g. ``3,forest`` for a ``LULC_ID`` field)."""
    return dict(_table_rows(path))


def read_class_table(path: str | os.PathLike[str]) -> MaskTable:
    """The class table file (see the module docstring) as a :class:`MaskTable`.

    Raises:
        LabelLayerError: Missing file, a line that is not ``KEY,NAME``, keys of both kinds,
            a key or a name twice, fewer than two classes.
    """
    file = Path(path)
    keys: list[int | tuple[int, int, int]] = []
    names: list[str] = []
    for key_text, name in _table_rows(file):
        if _HEX.match(key_text):
            keys.append(hex_rgb(key_text))
        elif re.fullmatch(r"\d+", key_text):
            keys.append(int(key_text))
        else:
            raise LabelLayerError(
                f"{file.name}: {key_text!r} is neither a mask value (a whole number) nor a "
                "colour (#RRGGBB).",
                "Write e.g. '3,water' or '#3C1098,building'.",
            )
        names.append(name)
    kinds = {isinstance(k, tuple) for k in keys}
    if len(kinds) > 1:
        raise LabelLayerError(
            f"{file.name} mixes mask values and colours.",
            "Use values for class-id masks or #RRGGBB colours for colour masks, not both.",
        )
    classes = [(k, n) for k, n in zip(keys, names, strict=True) if n != IGNORE_NAME]
    ignored = tuple(k for k, n in zip(keys, names, strict=True) if n == IGNORE_NAME)
    if len(classes) < 2:
        raise LabelLayerError(
            f"{file.name} names {len(classes)} class(es); training needs at least two.",
            "Add a line per class: 'VALUE,NAME' or '#RRGGBB,NAME'.",
        )
    class_names = tuple(n for _, n in classes)
    if kinds == {True}:
        colours = tuple(k for k, _ in classes)
        return MaskTable(class_names, colours=colours, ignored=ignored)  # type: ignore[arg-type]
    return MaskTable(class_names, values=tuple(k for k, _ in classes),  # type: ignore[misc]
                     ignored=ignored)  # fmt: skip


def _image_files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}  # fmt: skip


def match_folders(
    images: str | os.PathLike[str], masks: str | os.PathLike[str]
) -> list[tuple[Path, Path | None]]:
    """(image, mask or None) pairs by file stem, sorted by image name.

    Raises:
        LabelLayerError: A folder missing, no image, no image with a mask, or masks whose
            image is not there.
    """
    img_dir, mask_dir = Path(images), Path(masks)
    for folder, what in ((img_dir, "image"), (mask_dir, "mask")):
        if not folder.is_dir():
            raise LabelLayerError(f"The {what} folder does not exist: {folder}",
                                  f"Give the folder of the {what}s.")  # fmt: skip
    found, labels = _image_files(img_dir), _image_files(mask_dir)
    suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
    if not found:
        raise LabelLayerError(f"No images in {img_dir}.", f"Images end in one of {suffixes}.")
    orphans = sorted(set(labels) - set(found))
    if orphans:
        shown = ", ".join(labels[s].name for s in orphans[:5]) + (" ..." if len(orphans) > 5
                                                                  else "")  # fmt: skip
        raise LabelLayerError(
            f"{len(orphans)} mask(s) in {mask_dir} have no image of the same name in "
            f"{img_dir}: {shown}.",
            "Name each mask like its image (the suffix may differ), or remove the extra masks.",
        )
    pairs = [(path, labels.get(stem)) for stem, path in found.items()]
    if not any(m for _, m in pairs):
        raise LabelLayerError(
            f"No image in {img_dir} has a mask of the same name in {mask_dir}.",
            "Name each mask like its image (e.g. tile_01.jpg and tile_01.png).",
        )
    return pairs


def _open(path: Path) -> rasterio.DatasetReader:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            return rasterio.open(path)
        except rasterio.RasterioIOError as exc:
            raise LabelLayerError(
                f"Cannot read {path}: {exc}", "Give images GDAL can open (GeoTIFF, PNG, JPEG)."
            ) from None


def read_mask(path: Path, table: MaskTable) -> np.ndarray:
    """A mask's codes: its values (class-id masks) or packed RGB colours (colour masks:
    three bands, or one band with a colour table)."""
    with _open(path) as ds:
        if table.colours is None:
            return ds.read(1).astype(np.int64)
        if ds.count >= 3:
            rgb = ds.read([1, 2, 3]).astype(np.int64)
        else:
            try:
                palette = ds.colormap(1)
            except ValueError:
                raise LabelLayerError(
                    f"Mask {path.name} has {ds.count} band(s) and no colour table, but the "
                    "class table lists colours.",
                    "List the mask's values ('VALUE,NAME') instead of colours.",
                ) from None
            lut = np.zeros((3, 256), np.int64)
            for index, colour in palette.items():
                lut[:, index] = colour[:3]
            rgb = lut[:, ds.read(1).astype(np.int64) % 256]
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def _format_code(code: int, colours: bool) -> str:
    return f"#{code:06X}" if colours else str(code)


class BandFolderSource:
    """Images (raw bands, held in memory after the first read) and decoded masks.

    Args:
        pairs: (image, mask or None) paths.
        table: Mask decoding.
        bands: 1-based bands read from every image.
        stats: Band normalisation (tiles are normalised bands, NaN set to 0).
    """

    def __init__(
        self,
        pairs: list[tuple[Path, Path | None]],
        table: MaskTable,
        bands: list[int],
        stats: BandStats | None = None,
    ) -> None:
        self.pairs, self.table, self.bands, self.stats = pairs, table, bands, stats
        self._images: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._labels: dict[int, np.ndarray] = {}

    def image(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(bands (B, H, W) float32 raw, NaN where missing; valid (H, W)) of an image."""
        if index not in self._images:
            with _open(self.pairs[index][0]) as ds:
                self._images[index] = read_bands(ds, self.bands)
        return self._images[index]

    def label(self, index: int) -> np.ndarray:
        """(H, W) uint8 class ids of an image (all ignored without a mask)."""
        if index not in self._labels:
            image, mask = self.pairs[index]
            if mask is None:
                with _open(image) as ds:
                    shape = (ds.height, ds.width)
                self._labels[index] = np.full(shape, IGNORE_INDEX, np.uint8)
            else:
                self._labels[index] = self.table.decode_codes(read_mask(mask, self.table))
        return self._labels[index]

    def read_raw(self, ref: TileRef, role: Role) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw values of a tile: ((B, H, W) float32, NaN where missing; valid; labels)."""
        raw, valid = self.image(ref.source)
        tile = np.moveaxis(pad_window(np.moveaxis(raw, 0, -1), ref.row, ref.col, ref.size,
                                      np.nan), -1, 0)  # fmt: skip
        ok = pad_window(valid, ref.row, ref.col, ref.size, False)
        if role == "unlabelled":
            label = np.full(ok.shape, IGNORE_INDEX, np.uint8)
        else:
            label = pad_window(self.label(ref.source), ref.row, ref.col, ref.size, IGNORE_INDEX)
            label[~ok] = IGNORE_INDEX
        return np.ascontiguousarray(tile, dtype=np.float32), ok, label

    def read(self, ref: TileRef, role: Role) -> TileSample:
        """Read one tile (see :class:`~rs_reasoner_training.data.dataset.TileSource`)."""
        assert self.stats is not None
        raw, valid, label = self.read_raw(ref, role)
        return TileSample(normalised_tile_image(raw, valid, self.stats), label, valid)


def _check_pairs(
    pairs: list[tuple[Path, Path | None]], bands: list[int] | None
) -> tuple[list[int], list[str], dict[str, int], list[tuple[int, int]], list[str]]:
    """Headers only: every image has the bands, every mask its image's size and grid.

    Returns:
        The bands, their names and roles (first image), each image's (rows, cols) and
        the CRS of georeferenced images.
    """
    first_count = None
    shapes, crs_found = [], []
    chosen: list[int] = []
    names: list[str] = []
    roles: dict[str, int] = {}
    for image, mask in pairs:
        with _open(image) as ds:
            if first_count is None:
                first_count = ds.count
                chosen = list(bands) if bands else list(range(1, ds.count + 1))
                check_band_numbers(chosen, ds.count)
                names, roles = band_names(ds, chosen), band_roles(ds, chosen)
            elif ds.count < max(chosen) or (not bands and ds.count != first_count):
                raise LabelLayerError(
                    f"{image.name} has {ds.count} band(s) but {pairs[0][0].name} has "
                    f"{first_count}.",
                    "Give images of one sensor and band layout, or choose bands (--bands) "
                    "every image has.",
                )
            shapes.append((ds.height, ds.width))
            georef = ds.crs is not None
            if georef:
                crs_found.append(ds.crs.to_string())
            grid = (ds.transform, ds.crs)
        if mask is None:
            continue
        with _open(mask) as ms:
            if (ms.height, ms.width) != shapes[-1]:
                raise LabelLayerError(
                    f"Mask {mask.name} is {ms.width}x{ms.height} pixels but its image "
                    f"{image.name} is {shapes[-1][1]}x{shapes[-1][0]}.",
                    "Each mask must have its image's size (pixel for pixel).",
                )
            if georef and ms.crs is not None and (ms.transform, ms.crs) != grid:
                raise LabelLayerError(
                    f"Mask {mask.name} is georeferenced on another grid than {image.name}.",
                    "Write each mask on its image's grid (same extent, pixel size and CRS).",
                )
    return chosen, names, roles, shapes, sorted(set(crs_found))


def _check_values(source: BandFolderSource, indexes: list[int]) -> dict[int, np.ndarray]:
    """Decode the masks of ``indexes`` once; a value the table lacks is an error.

    Returns:
        {image index: pixels per class id}.
    """
    table = source.table
    counts = {}
    for i in indexes:
        image, mask = source.pairs[i]
        assert mask is not None
        codes = read_mask(mask, table)
        unknown = table.unknown_codes(codes)
        if unknown:
            colours = table.colours is not None
            shown = ", ".join(f"{_format_code(c, colours)} ({n} px)" for c, n in unknown[:5])
            key = "#RRGGBB" if colours else "VALUE"
            raise LabelLayerError(
                f"Mask {mask.name} has value(s) the class table does not list: {shown}.",
                f"Add a '{key},NAME' line for each to the class table (NAME '{IGNORE_NAME}' "
                "to ignore those pixels), or fix the mask.",
            )
        label = table.decode_codes(codes)
        source._labels[i] = label
        counts[i] = np.bincount(label[label != IGNORE_INDEX], minlength=len(table.class_names))
    return counts


def mask_folder_training_data(
    images: str | os.PathLike[str],
    masks: str | os.PathLike[str],
    classes: str | os.PathLike[str] | MaskTable,
    *,
    bands: list[int] | None = None,
    tile_size: int = TRAIN_DEFAULTS["tile_size"],
    val_fraction: float = TRAIN_DEFAULTS["val_fraction"],
    label_budget: float = TRAIN_DEFAULTS["label_budget"],
    seed: int = TRAIN_DEFAULTS["seed"],
) -> TrainingData:
    """Training data of normalised bands from an image folder and a mask folder.

    Args:
        images: Folder of images.
        masks: Folder of masks (same stems).
        classes: Class table file (or a table).
        bands: 1-based bands (default: every band of the images).
        tile_size: Tile side, at most: images smaller than a tile get tiles of their
            larger side (rounded up to 32 pixels) instead of mostly padding.
        val_fraction: Fraction of masked images held out whole.
        label_budget: Fraction of the other masked images whose masks are used.
        seed: Seed of the split and the budget.

    Returns:
        The datasets; ``summary`` has the plan (images and tiles per role, classes
        without validation pixels), ``band_stats`` and ``band_roles``.

    Raises:
        LabelLayerError: See :func:`read_class_table`, :func:`match_folders` and the
            checks in the module docstring.
    """
    table = classes if isinstance(classes, MaskTable) else read_class_table(classes)
    pairs = match_folders(images, masks)
    chosen, names, roles, shapes, crs = _check_pairs(pairs, bands)
    lab, val, unlab = split_images(pairs, val_fraction, label_budget, seed)
    source = BandFolderSource(pairs, table, chosen)
    counts = _check_values(source, [i for i, (_, m) in enumerate(pairs) if m is not None])
    train_pixels = sum((counts[i] for i in lab), np.zeros(len(table.class_names), np.int64))
    unseen = [n for n, c in zip(table.class_names, train_pixels, strict=True) if not c]
    if unseen:
        raise LabelLayerError(
            f"No training mask shows class(es) {', '.join(unseen)} ({len(lab)} image(s) "
            "train; the others are held out or unlabelled).",
            f"Add masks that show them, mark them '{IGNORE_NAME}' in the class table, or "
            "raise the label budget.",
        )
    largest = max(max(s) for s in shapes)
    size = max(32, min(tile_size, math.ceil(largest / 32) * 32))
    # Statistics of the images training sees (labelled and unlabelled), decimated.
    samples, dtypes = [], []
    for i in lab + unlab:
        with _open(pairs[i][0]) as ds:
            factor = max(1.0, max(ds.height, ds.width) / _STATS_SIDE)
            shape = (max(1, round(ds.height / factor)), max(1, round(ds.width / factor)))
            data, valid = read_bands(ds, chosen, out_shape=shape)
            dtypes.append(np.result_type(*[ds.dtypes[b - 1] for b in chosen]))
        samples.append(data[:, valid])
    stats = BandStats.from_samples(np.concatenate(samples, axis=1), chosen, names,
                                   np.result_type(*dtypes))  # fmt: skip
    source.stats = stats
    val_pixels = sum((counts[i] for i in val), np.zeros(len(table.class_names), np.int64))

    def refs(indexes: list[int]) -> list[TileRef]:
        return [r for i in indexes for r in grid_refs(i, *shapes[i], size)]

    train_refs, val_refs, unlab_refs = refs(lab), refs(val), refs(unlab)
    notes = []
    if size != tile_size:
        notes.append(f"tiles of {size} px, not {tile_size}: the largest image is {largest} px")
    summary = {
        "source": "folder",
        "images_dir": str(Path(images).resolve()),
        "masks_dir": str(Path(masks).resolve()),
        "tile_size": size,
        "tile_size_asked": tile_size,
        "bands": chosen,
        "crs": crs,
        "images": {"train": len(lab), "val": len(val), "unlabelled": len(unlab)},
        "tiles": {"train": len(train_refs), "val": len(val_refs),
                  "unlabelled": len(unlab_refs)},  # fmt: skip
        "train_images": [pairs[i][0].name for i in lab],
        "val_images": [pairs[i][0].name for i in val],
        "example_image": str(pairs[(val or lab)[0]][0].resolve()),
        "classes_without_validation": [n for n, c in zip(table.class_names, val_pixels,
                                                         strict=True) if val and not c],
        "band_stats": stats.to_dict(),
        "band_roles": roles,
        "notes": notes,
    }  # fmt: skip
    return TrainingData(
        class_names=list(table.class_names),
        labelled=TileDataset(source, train_refs, "train"),
        unlabelled=TileDataset(source, unlab_refs, "unlabelled") if unlab_refs else None,
        val=TileDataset(source, val_refs, "val") if val_refs else None,
        summary=summary,
    )
