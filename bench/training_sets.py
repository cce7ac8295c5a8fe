"""The sets of ``bench_training.py``: Dubai at a label budget, the Slovenia NDVI stack,
SpaceNet buildings, each split into training, validation and test labels for one seed
(the split rules are in ``bench_training.py``'s docstring)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from rs_reasoner.models.classical import ClassicalModel
from rs_reasoner.raster.band_roles import band_roles
from rs_reasoner.raster.band_stats import BandStats, read_bands
from rs_reasoner_training.classical import LabelledImage
from rs_reasoner_training.data.dataset import IGNORE_INDEX


class SplitSkipped(Exception):
    """A split whose labels ``train`` would refuse (a class without training labels)."""


@dataclass
class Scene:
    """One image of a benchmark set with its three label maps.

    Attributes:
        raw: (B, H, W) float32 raw values, NaN where missing.
        valid: (H, W) bool.
        train, val, test: (H, W) uint8 labels of each role (IGNORE_INDEX elsewhere).
        parcels: (H, W) int32 test parcel ids (0: none).
    """

    raw: np.ndarray
    valid: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    parcels: np.ndarray


@dataclass
class BenchSet:
    """A benchmark set: scenes, classes, band statistics and roles."""

    name: str
    class_names: list[str]
    scenes: list[Scene]
    stats: BandStats
    roles: dict[str, int]
    notes: list[str] = field(default_factory=list)
    classical: ClassicalModel | None = None

    def images(self, role: str) -> list[LabelledImage]:
        """Scenes as labelled images of one role (scenes without such labels left out)."""
        out = []
        for s in self.scenes:
            labels = getattr(s, role)
            if (labels != IGNORE_INDEX).any():
                out.append(LabelledImage(s.raw, s.valid, labels))
        return out

    def counts(self) -> dict[str, int]:
        """Labelled pixels per role."""
        return {
            role: int(sum((getattr(s, role) != IGNORE_INDEX).sum() for s in self.scenes))
            for role in ("train", "val", "test")
        }




def _checker(shape: tuple[int, int], block: int, offset: int = 0) -> np.ndarray:
    """(H, W) int: 0/1 checkerboard colour of each pixel's square."""
    rows = (np.arange(shape[0]) + offset) // block
    cols = (np.arange(shape[1]) + offset) // block
    return (rows[:, None] + cols[None, :]) % 2


def _keep(labels: np.ndarray, where: np.ndarray) -> np.ndarray:
    return np.where(where, labels, IGNORE_INDEX).astype(np.uint8)


def region_parcels(labels: np.ndarray, min_pixels: int) -> np.ndarray:
    """Connected regions of each class as parcel ids (regions under ``min_pixels`` left out)."""
    out = np.zeros(labels.shape, np.int32)
    next_id = 1
    for c in np.unique(labels[labels != IGNORE_INDEX]):
        regions, n = ndimage.label(labels == c)
        sizes = np.bincount(regions.ravel(), minlength=n + 1)
        for r in np.flatnonzero(sizes >= min_pixels):
            if r == 0:
                continue
            out[regions == r] = next_id
            next_id += 1
    return out


def _validation_squares(shape: tuple[int, int], block: int, seed: int) -> np.ndarray:
    """(H, W) bool: about one ``block`` square in five, seeded."""
    n_rows, n_cols = math.ceil(shape[0] / block), math.ceil(shape[1] / block)
    chosen = np.random.default_rng(seed).random((n_rows, n_cols)) < 0.2
    return np.kron(chosen, np.ones((block, block), bool))[: shape[0], : shape[1]]


def load_dubai(args: argparse.Namespace, budget: float) -> BenchSet:
    """Dubai: held-out test images, a label budget, validation squares (module docstring)."""
    from rs_reasoner_training.data.folder import (
        DUBAI_COLOURS,
        FolderSource,
        MaskTable,
        dubai_pairs,
    )

    pairs = dubai_pairs(args.data / "dubai")
    order = np.random.default_rng(args.seed).permutation(len(pairs))
    n_test = math.ceil(0.2 * len(pairs))
    rest = order[n_test:]
    n_lab = max(1, math.ceil(budget * len(rest) - 1e-9))
    source = FolderSource(pairs, MaskTable.from_colours(DUBAI_COLOURS), args.downscale)
    none = None
    scenes = []
    for rank, index in enumerate(order):
        image, label = source.load(int(index))
        raw = np.moveaxis(image, -1, 0).astype(np.float32)
        valid = np.ones(label.shape, bool)
        none = np.full(label.shape, IGNORE_INDEX, np.uint8)
        if rank < n_test:
            parcels = region_parcels(label, min_pixels=64)
            scenes.append(Scene(raw, valid, none, none, label, parcels))
        elif rank < n_test + n_lab:
            val = _validation_squares(label.shape, args.block, args.seed + rank)
            scenes.append(Scene(raw, valid, _keep(label, ~val), _keep(label, val), none,
                                np.zeros(label.shape, np.int32)))  # fmt: skip
        else:  # unlabelled pool
            scenes.append(Scene(raw, valid, none, none, none, np.zeros(label.shape, np.int32)))
    train = np.concatenate([s.raw[:, s.valid] for s in scenes if (s.train != IGNORE_INDEX).any()],
                           axis=1)  # fmt: skip
    stats = BandStats.from_samples(train, [1, 2, 3], ["red", "green", "blue"], "uint8")
    roles = {"red": 0, "green": 1, "blue": 2}
    notes = [f"{n_test} test images, {n_lab} labelled, {len(rest) - n_lab} unlabelled"]
    drawn = {int(c) for s in scenes for c in np.unique(s.train) if c != IGNORE_INDEX}
    missing = [n for c, n in enumerate(DUBAI_COLOURS) if c not in drawn]
    if missing:
        # train refuses labels without a class (an analyst labels one parcel of each).
        raise SplitSkipped(f"dubai {budget:.0%}: no {', '.join(missing)} in the labelled images")
    return BenchSet(f"dubai {budget:.0%}", list(DUBAI_COLOURS), scenes, stats, roles, notes)


def _parcel_labels(raster: Path, vector: Path, field_name: str):
    """Raster values, validity, per-pixel class id and parcel id (largest parcel first)."""
    import geopandas as gpd
    import rasterio
    from rasterio import features

    with rasterio.open(raster) as ds:
        raw, valid = read_bands(ds, list(range(1, ds.count + 1)))
        stats_ds = ds
        bands = list(range(1, ds.count + 1))
        roles = band_roles(stats_ds, bands)
        transform, shape, crs = ds.transform, (ds.height, ds.width), ds.crs
        frame = gpd.read_file(vector).to_crs(crs)
        names = frame[field_name].astype(str).str.strip()
        frame = frame.loc[names != ""].assign(name=names[names != ""]).reset_index(drop=True)
        class_names = sorted(set(frame["name"]))
        frame["class_id"] = frame["name"].map({n: i for i, n in enumerate(class_names)})
        order = np.argsort(-frame.geometry.area.to_numpy(), kind="stable")
        parcel = np.zeros(shape, np.int32)
        features.rasterize(
            [(frame.geometry.iloc[i], int(i) + 1) for i in order], out=parcel, transform=transform
        )
        band_names = [(d or f"band {b}") for b, d in zip(bands, ds.descriptions, strict=True)]
    return raw, valid, parcel, frame, class_names, roles, band_names


def _split_parcels(parcel: np.ndarray, frame: Any, test_of: Callable[[int], bool], seed: int):
    """Parcel roles: test by ``test_of(parcel row)``; of the others, a quarter of each
    class (at least one of a class with three or more) is validation."""
    rng = np.random.default_rng(seed)
    present = [i for i in range(len(frame)) if (parcel == i + 1).any()]
    roles = {i: "test" if test_of(i) else "train" for i in present}
    # A class needs a training parcel: take every other test parcel of one that has none.
    for name in sorted(set(frame["name"])):
        rows = [i for i in present if frame["name"].iloc[i] == name]
        if rows and not any(roles[i] == "train" for i in rows):
            for i in rows[::2]:
                roles[i] = "train"
        train = [i for i in rows if roles[i] == "train"]
        n_val = round(0.25 * len(train)) if len(train) >= 3 else 0
        for i in rng.permutation(train)[: max(n_val, 1 if len(train) >= 3 else 0)]:
            roles[int(i)] = "val"
    return roles


def _centroid_square(frame: Any, transform: Any, block: int) -> Callable[[int], bool]:
    """Is a parcel's centroid on a black checkerboard square of ``block`` px?"""
    inverse = ~transform

    def test_of(i: int) -> bool:
        c = frame.geometry.iloc[i].representative_point()
        col, row = inverse * (c.x, c.y)
        return (int(row) // block + int(col) // block) % 2 == 1

    return test_of


def load_slovenia(args: argparse.Namespace) -> BenchSet:
    """Slovenia NDVI stack and land-use parcels, split by checkerboard (module docstring)."""
    import rasterio

    root = args.data / "slovenia"
    raster = root / "slovenia_ndvi_68dates_utm33n.tif"
    raw, valid, parcel, frame, names, roles, band_names = _parcel_labels(
        raster, root / "slovenia_lulc.gpkg", "LULC_NAME"
    )
    with rasterio.open(raster) as ds:
        transform = ds.transform
    split = _split_parcels(parcel, frame, _centroid_square(frame, transform, args.slovenia_block),
                           args.seed)  # fmt: skip
    return _parcel_set("slovenia", raw, valid, parcel, frame, names, roles, band_names, split)


def _parcel_set(name, raw, valid, parcel, frame, names, roles, band_names, split) -> BenchSet:
    labels = {r: np.full(parcel.shape, IGNORE_INDEX, np.uint8) for r in ("train", "val", "test")}
    test_parcels = np.zeros(parcel.shape, np.int32)
    for i, role in split.items():
        inside = (parcel == i + 1) & valid
        labels[role][inside] = frame["class_id"].iloc[i]
        if role == "test":
            test_parcels[inside] = i + 1
    scene = Scene(raw, valid, labels["train"], labels["val"], labels["test"], test_parcels)
    train_pixels = (labels["train"] != IGNORE_INDEX) | (labels["val"] != IGNORE_INDEX)
    stats = BandStats.from_samples(raw[:, valid & train_pixels] if train_pixels.any()
                                   else raw[:, valid], list(range(1, raw.shape[0] + 1)),
                                   band_names)  # fmt: skip
    counts = {r: sum(1 for v in split.values() if v == r) for r in ("train", "val", "test")}
    notes = [f"parcels: {counts}"]
    missing = sorted(
        {frame["name"].iloc[i] for i, r in split.items() if r == "test"}
        - {frame["name"].iloc[i] for i, r in split.items() if r == "train"}
    )
    if missing:
        notes.append(f"test classes without training parcels: {missing}")
    return BenchSet(name, names, [scene], stats, roles, notes)


def load_spacenet(args: argparse.Namespace) -> BenchSet:
    """SpaceNet Atlanta buildings vs. other, checkerboard split (module docstring)."""
    import geopandas as gpd
    import rasterio
    from rasterio import features

    raster = args.data / "spacenet_atlanta_pan_utm16n.tif"
    with rasterio.open(raster) as ds:
        raw, valid = read_bands(ds, [1])
        frame = gpd.read_file(args.data / "spacenet_atlanta_buildings.geojson").to_crs(ds.crs)
        building = features.rasterize(
            [(g, i + 1) for i, g in enumerate(frame.geometry)],
            out_shape=valid.shape, transform=ds.transform, fill=0, dtype="int32",
        )  # fmt: skip
        stats_names = [ds.descriptions[0] or "band 1"]
    block = args.spacenet_block
    black = _checker(valid.shape, block) == 1
    white_val = _validation_squares(valid.shape, block, args.seed) & ~black
    label = (building > 0).astype(np.uint8)  # 0 other, 1 building
    # Buildings are parcels of the square holding most of them; "other" of each test square
    # is one parcel too.
    test_parcels = np.zeros(valid.shape, np.int32)
    for i in range(len(frame)):
        inside = building == i + 1
        if inside.any() and black[inside].mean() >= 0.5:
            test_parcels[inside] = i + 1
    squares = ndimage.label(black & (building == 0))[0]
    test_parcels[squares > 0] = len(frame) + squares[squares > 0]
    test = _keep(label, black & valid)
    train = _keep(label, ~black & ~white_val & valid)
    val = _keep(label, white_val & valid)
    scene = Scene(raw, valid, train, val, test, test_parcels)
    stats = BandStats.from_samples(raw[:, valid & ~black], [1], stats_names, "uint16")
    return BenchSet("spacenet", ["other", "building"], [scene], stats, {}, [f"block {block} px"])


def load_sets(args: argparse.Namespace) -> Iterator[BenchSet | SplitSkipped]:
    """Every benchmark set of ``args.sets`` for one split (``args.seed``)."""
    for name in args.sets:
        if name == "dubai":
            for budget in args.budgets:
                try:
                    yield load_dubai(args, budget)
                except SplitSkipped as why:
                    yield why
        elif name == "slovenia":
            yield load_slovenia(args)
        else:
            yield load_spacenet(args)
