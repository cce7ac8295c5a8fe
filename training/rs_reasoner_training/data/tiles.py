"""Tiles from a raster and its parcels: labelled, unlabelled and a spatially disjoint split.

The raster's working grid is cut into non-overlapping square tiles (the last row and
column padded). A tile touching a parcel is a labelled tile; the others (inside the AOI,
with some valid pixels) are unlabelled tiles.

Validation holds out whole parcels: parcels that share a tile are grouped (connected
components of the parcel-tile graph), and whole groups go to validation. So every tile
touching a validation parcel is a validation tile and touches no training parcel: no
pixel of a validation parcel is ever seen in training, labelled or not.

The label budget keeps a fraction of the *training* parcels per class (at least one each,
seeded), after the split, so runs with different budgets are scored on the same held-out
parcels. Tiles whose parcels were all left out become unlabelled tiles.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.transform import array_bounds
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rs_reasoner.raster import ExtentReader, open_raster, raster_transform
from rs_reasoner.raster.band_roles import band_roles
from rs_reasoner.raster.band_stats import BandStats, read_bands
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
)
from rs_reasoner_training.data.parcels import (
    AoiInput,
    LayerInput,
    ParcelLayer,
    grid_bounds,
    load_parcels,
)
from rs_reasoner_training.data.parcels import rasterize_parcels as _rasterize
from rs_reasoner_training.errors import LabelLayerError

#: Parcel roles in :attr:`TilePlan.parcel_role`.
TRAIN, VAL, LEFT_OUT = 0, 1, 2

#: Long side of the decimated mask read used to skip empty (all-NoData) tiles.
_MASK_SIZE = 1024


@dataclass
class TilePlan:
    """Which tiles are labelled, held out or unlabelled, and the role of each parcel.

    Attributes:
        tile_size: Tile side in working pixels.
        train: Labelled training tiles.
        val: Held-out tiles (touch only validation parcels).
        unlabelled: Tiles touching no used parcel.
        parcel_role: Per parcel row: TRAIN, VAL or LEFT_OUT (label budget).
        parcel_group: Per parcel row: id of its group of tile-sharing parcels.
    """

    tile_size: int
    train: list[TileRef]
    val: list[TileRef]
    unlabelled: list[TileRef]
    parcel_role: np.ndarray
    parcel_group: np.ndarray
    notes: list[str] = field(default_factory=list)


def tile_boxes(refs: list[TileRef], transform: Affine) -> np.ndarray:
    """Footprints of tiles in map coordinates (shapely polygons)."""
    out = []
    for ref in refs:
        corners = [
            transform @ (c, r)
            for r, c in (
                (ref.row, ref.col),
                (ref.row, ref.col + ref.size),
                (ref.row + ref.size, ref.col + ref.size),
                (ref.row + ref.size, ref.col),
            )
        ]
        out.append(shapely.Polygon(corners))
    return np.asarray(out, dtype=object)


def group_parcels(n_parcels: int, tile_idx: np.ndarray, parcel_idx: np.ndarray) -> np.ndarray:
    """Group parcels that share a tile (transitively).

    Args:
        n_parcels: Number of parcels.
        tile_idx: Tile of each (tile, parcel) incidence.
        parcel_idx: Parcel of each incidence.

    Returns:
        (n_parcels,) group id of each parcel.
    """
    if n_parcels == 0:
        return np.zeros(0, dtype=np.int64)
    n_tiles = int(tile_idx.max()) + 1 if len(tile_idx) else 0
    # Bipartite graph: nodes 0..n_parcels-1 are parcels, then tiles.
    rows = np.asarray(parcel_idx, dtype=np.int64)
    cols = n_parcels + np.asarray(tile_idx, dtype=np.int64)
    size = n_parcels + n_tiles
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(size, size))
    _, comp = connected_components(graph, directed=False)
    _, groups = np.unique(comp[:n_parcels], return_inverse=True)
    return groups


def split_groups(
    groups: np.ndarray, class_ids: np.ndarray, val_fraction: float, seed: int
) -> np.ndarray:
    """Choose whole groups for validation, about ``val_fraction`` of the parcels.

    Groups are taken in a seeded random order; a group is skipped when taking it would
    leave a class with no training parcel.

    Args:
        groups: Group of each parcel.
        class_ids: Class of each parcel.
        val_fraction: Fraction of parcels to hold out (0 for none).
        seed: Random seed.

    Returns:
        (n_parcels,) bool, True for validation parcels.

    Raises:
        LabelLayerError: A validation split was asked for but no group can be held out.
    """
    is_val = np.zeros(len(groups), dtype=bool)
    if val_fraction <= 0 or len(groups) == 0:
        return is_val
    if not 0 < val_fraction < 1:
        raise LabelLayerError(
            f"The validation fraction must be between 0 and 1, not {val_fraction}.",
            "Use e.g. 0.2 to hold out a fifth of the parcels.",
        )
    target = val_fraction * len(groups)
    train_counts = np.bincount(class_ids, minlength=int(class_ids.max()) + 1)
    for g in np.random.default_rng(seed).permutation(np.unique(groups)):
        if is_val.sum() >= target:
            break
        members = groups == g
        left = train_counts - np.bincount(class_ids[members], minlength=len(train_counts))
        if np.any((train_counts > 0) & (left == 0)):
            continue  # would take the last training parcels of a class
        is_val |= members
        train_counts = left
    if not is_val.any():
        raise LabelLayerError(
            "No parcels can be held out for validation without removing a class from "
            "training (too few parcels, or all parcels share tiles and form one block).",
            "Label more parcels, use a smaller tile size, or turn validation off "
            "(validation fraction 0).",
        )
    return is_val


def check_parcels_per_class(
    class_ids: np.ndarray, class_names: list[str], background_id: int | None = None
) -> None:
    """Refuse a class drawn as a single parcel when a validation split is asked for.

    One parcel cannot be both learnt from and held out to check the model: the class
    would never be validated, and its score would be missing from the comparison of
    models. The background class (pixels outside parcels) needs no parcel.

    Raises:
        LabelLayerError: Names the classes with one parcel.
    """
    counts = np.bincount(class_ids, minlength=len(class_names))
    single = [class_names[c] for c in np.flatnonzero(counts == 1) if c != background_id]
    if single:
        names = ", ".join(repr(n) for n in single)
        raise LabelLayerError(
            f"Class(es) {names} have only one parcel: a class needs at least two, one to "
            "learn from and one held out to check the model.",
            f"Label another parcel of {names}, remove the class, or turn validation off "
            "(validation fraction 0).",
        )


def budget_parcels(
    candidates: np.ndarray, class_ids: np.ndarray, budget: float, seed: int
) -> np.ndarray:
    """Keep a fraction of the candidate parcels per class (at least one per class).

    Args:
        candidates: Bool per parcel: may be used for training.
        class_ids: Class of each parcel.
        budget: Fraction in (0, 1] of each class's candidate parcels to keep.
        seed: Random seed; the same seed keeps a nested subset as the budget grows.

    Returns:
        (n_parcels,) bool, True for kept parcels.
    """
    if not 0 < budget <= 1:
        raise LabelLayerError(
            f"The label budget must be in (0, 1], not {budget}.",
            "Use e.g. 0.1 to train on 10% of the parcels.",
        )
    keep = np.zeros(len(class_ids), dtype=bool)
    rng = np.random.default_rng(seed)
    for c in np.unique(class_ids[candidates]):
        idx = np.flatnonzero(candidates & (class_ids == c))
        # One permutation per class: larger budgets take a superset of smaller ones.
        order = idx[rng.permutation(len(idx))]
        keep[order[: max(1, math.ceil(budget * len(idx) - 1e-9))]] = True
    return keep


def plan_tiles(
    parcels: ParcelLayer,
    transform: Affine,
    shape: tuple[int, int],
    tile_size: int,
    *,
    val_fraction: float = TRAIN_DEFAULTS["val_fraction"],
    label_budget: float = TRAIN_DEFAULTS["label_budget"],
    seed: int = TRAIN_DEFAULTS["seed"],
    valid_fraction: np.ndarray | None = None,
    min_valid: float = 0.01,
) -> TilePlan:
    """Assign tiles and parcels to training, validation and the unlabelled pool.

    Args:
        parcels: The parcels (raster CRS).
        transform: Affine of the working grid.
        shape: (rows, cols) of the working grid.
        tile_size: Tile side in pixels.
        val_fraction: Fraction of parcels held out (whole groups).
        label_budget: Fraction of training parcels whose labels are used.
        seed: Random seed of the split and the budget.
        valid_fraction: Optional valid-pixel fraction per grid tile (row-major); tiles
            under ``min_valid`` are not used as unlabelled tiles.
        min_valid: See ``valid_fraction``.

    Returns:
        The plan.
    """
    if tile_size < 16:
        raise LabelLayerError(f"Tile size {tile_size} is too small.", "Use 128-512 pixels.")
    refs = grid_refs(0, shape[0], shape[1], tile_size)
    boxes = tile_boxes(refs, transform)
    frame = parcels.frame
    tile_idx, parcel_idx = frame.sindex.query(boxes, predicate="intersects")
    groups = group_parcels(len(frame), tile_idx, parcel_idx)
    class_ids = frame["class_id"].to_numpy()
    notes = []
    if val_fraction > 0:
        check_parcels_per_class(class_ids, parcels.class_names, parcels.background_id)
    try:
        is_val = split_groups(groups, class_ids, val_fraction, seed)
    except LabelLayerError:
        if len(np.unique(groups)) == len(groups):
            raise  # every parcel is its own group already: too few parcels
        # One block of tile-sharing parcels (e.g. a large parcel touching every tile):
        # hold parcels out one by one; tiles then serve both roles, each with its labels.
        groups = np.arange(len(frame))
        is_val = split_groups(groups, class_ids, val_fraction, seed)
        notes.append(
            "The parcels share tiles, so no block of tiles could be held out: validation "
            "parcels were held out one by one (training tiles show their pixels, never "
            "their labels)."
        )
    kept = budget_parcels(~is_val, class_ids, label_budget, seed)
    role = np.full(len(frame), LEFT_OUT, dtype=np.int64)
    role[kept] = TRAIN
    role[is_val] = VAL

    tile_roles: list[set[int]] = [set() for _ in refs]
    for t, p in zip(tile_idx, parcel_idx, strict=True):
        tile_roles[t].add(int(role[p]))
    in_aoi = (
        shapely.intersects(boxes, parcels.aoi)
        if parcels.aoi is not None
        else np.ones(len(refs), bool)
    )
    train, val, unlabelled = [], [], []
    for i, ref in enumerate(refs):
        r = tile_roles[i]
        if VAL in r:
            val.append(ref)  # no TRAIN parcel here, unless held out one by one (above)
        if TRAIN in r:
            train.append(ref)
        enough = valid_fraction is None or valid_fraction[i] >= min_valid
        if not r & {VAL, TRAIN} and in_aoi[i] and enough:
            unlabelled.append(ref)
    return TilePlan(tile_size, train, val, unlabelled, role, groups, notes)


#: Tiles a raster should hold across its shorter side: fewer, and parcels cannot be split
#: between training and validation by tiles, nor an epoch fill more than a batch or two.
MIN_TILES_ACROSS = 4
#: Smallest adapted tile side; tiles stay multiples of this (the U-Net halves them 4 times).
MIN_TILE_SIZE = 32


def fit_tile_size(shape: tuple[int, int], tile_size: int) -> tuple[int, str | None]:
    """The tile side for a raster of ``shape``: ``tile_size``, or less on a small raster.

    Args:
        shape: (rows, cols) of the working grid.
        tile_size: The tile side asked for (an upper bound).

    Returns:
        The side (a multiple of :data:`MIN_TILE_SIZE` when adapted, never below it) and,
        when it differs from ``tile_size``, one line saying what was chosen and why.
    """
    short = min(shape)
    size = (short // MIN_TILES_ACROSS) // MIN_TILE_SIZE * MIN_TILE_SIZE
    size = max(MIN_TILE_SIZE, size)
    if size >= tile_size:
        return tile_size, None

    def grid(side: int) -> str:
        return f"{math.ceil(shape[1] / side)}x{math.ceil(shape[0] / side)}"

    return size, (
        f"tiles of {size} px, not {tile_size}: the {shape[1]}x{shape[0]} px raster holds "
        f"{grid(tile_size)} tiles of {tile_size} px and {grid(size)} of {size} px, enough to "
        "split parcels between training and validation and to fill each epoch's batches"
    )


def tile_valid_fraction(ds: Any, refs: list[TileRef], scale: float = 1.0) -> np.ndarray:
    """Valid-pixel fraction per tile, from a decimated read of the dataset mask.

    Args:
        ds: Open raster.
        refs: Tiles on the working grid (``scale`` source pixels per working pixel).
        scale: Source pixels per working pixel.

    Returns:
        (len(refs),) fractions in [0, 1] (approximate: decimated).
    """
    factor = max(1.0, max(ds.height, ds.width) / _MASK_SIZE)
    shape = (max(1, round(ds.height / factor)), max(1, round(ds.width / factor)))
    mask = ds.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
    fy, fx = shape[0] / ds.height * scale, shape[1] / ds.width * scale
    out = np.zeros(len(refs))
    for i, ref in enumerate(refs):
        r0, c0 = int(ref.row * fy), int(ref.col * fx)
        r1 = max(r0 + 1, math.ceil((ref.row + ref.size) * fy))
        c1 = max(c0 + 1, math.ceil((ref.col + ref.size) * fx))
        part = mask[r0:r1, c0:c1]
        out[i] = part.sum() / ((r1 - r0) * (c1 - c0))  # past the edge counts as invalid
    return out


def check_parcels_have_data(ds: Any, parcels: ParcelLayer) -> None:
    """Refuse classes whose parcels all lie on pixels without data (NoData, NaN).

    Such a class cannot be learnt (its labels are dropped with the invalid pixels), and
    training would quietly run without it. The check burns the parcels onto a decimated
    read of every band (a pixel has data where any band is finite and unmasked, as the
    raw reader decides; at most ~16 M values), touching pixels counting, so a small parcel
    never vanishes.

    Raises:
        LabelLayerError: Names the classes.
    """
    side = max(128, min(_MASK_SIZE, int(math.sqrt((1 << 24) / ds.count))))
    factor = max(1.0, max(ds.height, ds.width) / side)
    shape = (max(1, round(ds.height / factor)), max(1, round(ds.width / factor)))
    _, mask = read_bands(ds, range(1, ds.count + 1), out_shape=shape)
    grid = raster_transform(ds) @ Affine.scale(ds.width / shape[1], ds.height / shape[0])
    frame = parcels.frame
    burnt = rasterize(
        ((g, int(c) + 1) for g, c in zip(frame.geometry, frame["class_id"], strict=True)),
        out_shape=shape, transform=grid, fill=0, all_touched=True, dtype="int32",
    )  # fmt: skip
    with_data = set(np.unique(burnt[mask & (burnt > 0)]) - 1)
    empty = [parcels.class_names[c] for c in sorted(set(frame["class_id"])) if c not in with_data]
    if empty:
        names = ", ".join(repr(n) for n in empty)
        raise LabelLayerError(
            f"The parcels of class(es) {names} lie only on pixels without data (NoData or "
            "NaN): there is nothing to learn them from.",
            "Draw them over pixels that hold data (check the raster's NoData value and "
            "cloud mask), or remove the class.",
        )


class RasterParcelSource:
    """Reads raster tiles and their parcel labels: as 8-bit RGB stretched like the
    backend's reader, or (with ``stats``) as raw bands normalised by ``stats``.

    The raster is opened lazily in each process, so the source can be pickled to
    DataLoader workers.

    Args:
        path: Raster path.
        parcels: Parcels in the raster CRS.
        plan: Tile plan (gives each parcel's role).
        bands: Three 1-based bands (see ``rs_reasoner.raster.select_bands``), or with
            ``stats`` its bands.
        scale: Source pixels per working pixel.
        lo, hi: Stretch range per band (unused with ``stats``).
        transform: Affine of the working grid.
        stats: Band normalisation: tiles are (H, W, B) float32 normalised bands.
    """

    def __init__(
        self,
        path: str,
        parcels: ParcelLayer,
        plan: TilePlan,
        bands: list[int],
        scale: float,
        lo: np.ndarray,
        hi: np.ndarray,
        transform: Affine,
        shape: tuple[int, int],
        stats: BandStats | None = None,
    ) -> None:
        self.path = path
        self.bands, self.scale, self.lo, self.hi = bands, scale, lo, hi
        self.stats = stats
        self.transform, self.shape = transform, shape
        frame = parcels.frame
        self.train = frame.loc[plan.parcel_role == TRAIN]
        self.val = frame.loc[plan.parcel_role == VAL]
        self.left_out = frame.loc[plan.parcel_role == LEFT_OUT]
        # Pixels a training tile must not label: parcels left out by the budget and
        # validation parcels (a tile may hold both when parcels were held out one by one).
        self.hidden = frame.loc[plan.parcel_role != TRAIN]
        self.fill = IGNORE_INDEX if parcels.background_id is None else parcels.background_id
        self.aoi = parcels.aoi
        self._reader: ExtentReader | None = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reader"], state["_pid"] = None, -1  # open datasets do not pickle
        return state

    def _open(self) -> ExtentReader:
        if self._reader is None or self._pid != os.getpid():
            ds = open_raster(self.path)
            window = (0, 0, *self.shape)
            self._reader = ExtentReader(ds, self.bands, self.scale, window, self.lo, self.hi)
            self._reader.raw = self.stats is not None
            self._pid = os.getpid()
        return self._reader

    def read(self, ref: TileRef, role: Role) -> TileSample:
        """Read one tile (see :class:`~rs_reasoner_training.data.dataset.TileSource`)."""
        if self.stats is not None:
            raw, valid, label = self.read_raw(ref, role)
            return TileSample(normalised_tile_image(raw, valid, self.stats), label, valid)
        image, valid = self._open().read(ref.row, ref.col, ref.row + ref.size, ref.col + ref.size)
        return TileSample(image, self._labels(ref, role, valid), valid)

    def read_raw(self, ref: TileRef, role: Role) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw band values of a tile (needs ``stats``): ((B, H, W) float32 with NaN where
        missing, valid (H, W), labels (H, W))."""
        end = (ref.row + ref.size, ref.col + ref.size)
        raw, valid = self._open().read_raw(ref.row, ref.col, *end)
        return raw, valid, self._labels(ref, role, valid)

    def _labels(self, ref: TileRef, role: Role, valid: np.ndarray) -> np.ndarray:
        """The tile's labels for ``role`` (all ignore for unlabelled tiles)."""
        shape = (ref.size, ref.size)
        if role == "unlabelled":
            label = np.full(shape, IGNORE_INDEX, np.uint8)
        else:
            tf = self.transform @ Affine.translation(ref.col, ref.row)
            frame = self.val if role == "val" else self.train
            ignored = None if role == "val" else self.hidden
            near = shapely.box(*array_bounds(*shape, tf))  # only parcels touching the tile
            label = _rasterize(
                _touching(frame, near), tf, shape, fill=self.fill,
                ignored=None if ignored is None else _touching(ignored, near), aoi=self.aoi,
            )  # fmt: skip
            label[~valid] = IGNORE_INDEX
        return label

    def close(self) -> None:
        """Close the raster if open."""
        if self._reader is not None:
            self._reader.ds.close()
            self._reader = None


def _touching(frame: Any, area: Any) -> Any:
    """The rows of a GeoDataFrame whose geometry intersects ``area`` (spatial index)."""
    return frame.iloc[np.sort(frame.sindex.query(area, predicate="intersects"))]


def parcel_training_data(
    raster: str | os.PathLike[str],
    labels: LayerInput,
    class_field: str,
    *,
    layer: str | None = None,
    aoi: AoiInput | None = None,
    background: str | None = None,
    bands: list[int] | None = None,
    resolution: float | None = None,
    tile_size: int = TRAIN_DEFAULTS["tile_size"],
    val_fraction: float = TRAIN_DEFAULTS["val_fraction"],
    label_budget: float = TRAIN_DEFAULTS["label_budget"],
    seed: int = TRAIN_DEFAULTS["seed"],
    all_bands: bool = False,
    classes: str | os.PathLike[str] | None = None,
) -> TrainingData:
    """Training data from a raster and its labelled parcels.

    Args:
        raster: Raster path (anything GDAL reads).
        labels: Parcels: vector path (GPKG/SHP/GeoJSON) or GeoDataFrame.
        class_field: Field with each parcel's class.
        layer: Layer name in a multi-layer file.
        aoi: Optional area of interest (vector path, frame or geometry in raster CRS).
        background: Class name for uncovered pixels in labelled tiles, or None (ignore).
        bands: 1 or 3 band numbers, or None for the backend's default choice; with
            ``all_bands``, any band numbers (None: every band).
        resolution: Working resolution in raster CRS units (None: native), as at serving.
        tile_size: Tile side in working pixels.
        val_fraction: Fraction of parcels held out (whole tile-sharing groups).
        label_budget: Fraction of training parcels whose labels are used.
        seed: Seed of the split and the budget.
        all_bands: Tiles of raw bands normalised by robust statistics of the raster
            (``summary["band_stats"]``), instead of the 8-bit RGB the backend's open-
            vocabulary models see.
        classes: Class table file naming the class field's values (``VALUE,NAME`` lines,
            :func:`~rs_reasoner_training.data.mask_folders.read_class_names`).

    Returns:
        The datasets, class names and a summary.

    Raises:
        LabelLayerError, RasterError, ExtentError: Unusable inputs (see messages).
    """
    path = os.fspath(raster)
    with open_raster(path) as ds:
        reader = ExtentReader.open(ds, None, bands, resolution, raw=all_bands)
        stats = BandStats.from_raster(ds, reader.bands) if all_bands else None
        roles = band_roles(ds, reader.bands)
        transform, shape = reader.grid_transform, reader.grid_shape
        bounds = grid_bounds(transform, shape)
        names = None
        if classes is not None:
            from rs_reasoner_training.data.mask_folders import read_class_names

            names = read_class_names(classes)
        parcels = load_parcels(
            labels, class_field, ds.crs, bounds, layer=layer, aoi=aoi, background=background,
            class_names=names,
        )  # fmt: skip
        check_parcels_have_data(ds, parcels)
        asked = tile_size
        tile_size, tile_note = fit_tile_size(shape, tile_size)
        refs = grid_refs(0, shape[0], shape[1], tile_size)
        fractions = tile_valid_fraction(ds, refs, reader.scale)
        plan = plan_tiles(
            parcels,
            transform,
            shape,
            tile_size,
            val_fraction=val_fraction,
            label_budget=label_budget,
            seed=seed,
            valid_fraction=fractions,
        )
        source = RasterParcelSource(
            path, parcels, plan, reader.bands, reader.scale, reader.lo, reader.hi, transform,
            shape, stats,
        )  # fmt: skip
    notes = ([tile_note] if tile_note else []) + parcels.notes + plan.notes
    val_ids = set(parcels.frame["class_id"].to_numpy()[plan.parcel_role == VAL].tolist())
    summary = {
        "source": "parcels",
        "raster": path,
        "tile_size": tile_size,
        "tile_size_asked": asked,
        "classes_without_validation": [
            n
            for i, n in enumerate(parcels.class_names)
            if plan.val and i not in val_ids and i != parcels.background_id
        ],
        "bands": list(reader.bands),
        "scale": float(reader.scale),  # working pixel / raster pixel (the resolution)
        "parcels": {
            "train": int((plan.parcel_role == TRAIN).sum()),
            "val": int((plan.parcel_role == VAL).sum()),
            "left_out": int((plan.parcel_role == LEFT_OUT).sum()),
            "groups": int(plan.parcel_group.max() + 1) if len(plan.parcel_group) else 0,
        },
        "tiles": {
            "train": len(plan.train),
            "val": len(plan.val),
            "unlabelled": len(plan.unlabelled),
        },
        "notes": notes,
    }
    if stats is not None:
        summary["band_stats"] = stats.to_dict()
        summary["band_roles"] = roles
    return TrainingData(
        class_names=parcels.class_names,
        labelled=TileDataset(source, plan.train, "train"),
        unlabelled=TileDataset(source, plan.unlabelled, "unlabelled") if plan.unlabelled else None,
        val=TileDataset(source, plan.val, "val") if plan.val else None,
        summary=summary,
    )
