"""Weak labels as an extra labelled source of parcel training data.

Parcels always win: a weak label only fills a pixel of a training tile that the parcels
leave unlabelled; validation tiles are never given weak labels (they score the model on
the user's parcels alone). Unlabelled tiles where the products say something become
training tiles.

The deep model's loss is weighted by the confidence in expectation: each time a tile is
read, each weak-labelled pixel is kept with probability equal to its confidence (a
fresh draw per read), so a pixel of confidence 0.3 enters the cross-entropy in 30 % of
the epochs. The classical learner takes the confidence as sample weights
(:meth:`WeakLabelSource.read_weighted`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rs_reasoner.atomic import write_text_atomic
from rs_reasoner.landcover import WEAK_LABELS_FILE
from rs_reasoner.landcover.mapping import apply_mapping, build_mapping, read_mapping_rows
from rs_reasoner.landcover.products import Grid, ProductSpec, read_product
from rs_reasoner_training.data.dataset import (
    IGNORE_INDEX,
    Role,
    TileDataset,
    TileRef,
    TileSample,
    TileSource,
    TrainingData,
    pad_window,
)
from rs_reasoner_training.weak.agreement import (
    ProductReport,
    WeakLabels,
    report_lines,
    weak_labels,
)

#: A tile needs this share of weak-labelled pixels to become a training tile.
MIN_WEAK_SHARE = 0.01
#: Largest training grid weak labels are computed on at once (pixels).
MAX_GRID_PIXELS = 200_000_000


def prepare_weak_labels(
    specs: Sequence[str | ProductSpec],
    grid: Grid,
    class_names: Sequence[str],
    parcels: np.ndarray | None = None,
) -> WeakLabels:
    """Read, map, check and combine land-cover products on the training grid.

    Args:
        specs: ``PATH[:LEGEND][:MAPPING.csv]`` entries (or parsed specs).
        grid: The training grid.
        class_names: The user's classes.
        parcels: (H, W) training-parcel labels on the grid, for reliabilities and kappa.

    Returns:
        The weak labels with one report per product.

    Raises:
        LabelLayerError: Any unusable product or mapping (one clear message each).
    """
    from rs_reasoner_training.errors import LabelLayerError

    if grid.shape[0] * grid.shape[1] > MAX_GRID_PIXELS:
        raise LabelLayerError(
            f"Weak labels are made on grids of at most {MAX_GRID_PIXELS:,} pixels; this "
            f"training grid has {grid.shape[0] * grid.shape[1]:,}.",
            "Train at a coarser resolution (--resolution) or on a smaller raster.",
        )
    names, labels, ratios = [], [], []
    for spec in specs:
        spec = spec if isinstance(spec, ProductSpec) else ProductSpec.parse(spec)
        product = read_product(spec, grid)
        rows = read_mapping_rows(spec.mapping) if spec.mapping else None
        table = build_mapping(
            product.legend, class_names, product.name, rows, spec.mapping or "same class names"
        )
        names.append(product.name)
        labels.append(apply_mapping(product.codes, table))
        ratios.append(product.pixel_ratio)
    return weak_labels(names, labels, ratios, parcels, class_names)


class WeakLabelSource:
    """A tile source whose training tiles get weak labels where the parcels have none.

    Args:
        inner: The parcel source.
        weak: Weak labels on the same grid as the inner source's tiles.
        moved: Tiles the inner source treats as unlabelled that are now training tiles.
        seed: Seed of the per-read confidence draws.
    """

    def __init__(self, inner: TileSource, weak: WeakLabels, moved: set[TileRef], seed: int) -> None:
        self.inner = inner
        self.labels = weak.labels
        # Confidence in 1/255 steps: a quarter of the memory of float32 on large grids.
        self.confidence = np.round(weak.confidence * 255).astype(np.uint8)
        self.moved = moved
        self.seed = seed
        self._reads = 0

    def confidence_window(self, ref: TileRef) -> np.ndarray:
        """(size, size) float32 confidence of the weak labels of a tile (0 where none)."""
        return pad_window(self.confidence, ref.row, ref.col, ref.size, 0).astype(np.float32) / 255

    def __getattr__(self, name: str) -> Any:
        # Everything else (grid, bands, statistics...) is the parcel source's.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _weak_fill(self, ref: TileRef, label: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Where the parcels leave a valid pixel unlabelled and a product labels it."""
        weak = pad_window(self.labels, ref.row, ref.col, ref.size, IGNORE_INDEX)
        return (label == IGNORE_INDEX) & valid & (weak != IGNORE_INDEX)

    def read_raw(self, ref: TileRef, role: Role) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw bands, valid and labels of a tile (what the classical learner reads), every
        weak label included (:meth:`read_weighted` adds their confidence)."""
        return self.read_weighted(ref, role)[:3]

    def read_weighted(
        self, ref: TileRef, role: Role
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`read_raw` plus the labels' sample weights: 1 for parcel labels, the
        confidence for weak ones (None outside training tiles)."""
        inner_role: Role = "unlabelled" if role == "train" and ref in self.moved else role
        raw, valid, label = self.inner.read_raw(ref, inner_role)  # type: ignore[attr-defined]
        if role != "train":
            return raw, valid, label, None
        fill = self._weak_fill(ref, label, valid)
        weak = pad_window(self.labels, ref.row, ref.col, ref.size, IGNORE_INDEX)
        weight = np.where(fill, self.confidence_window(ref), 1.0).astype(np.float32)
        return raw, valid, np.where(fill, weak, label).astype(np.uint8), weight

    def read(self, ref: TileRef, role: Role) -> TileSample:
        """Read one tile; training tiles get weak labels (module docstring)."""
        if role != "train":
            return self.inner.read(ref, role)
        sample = self.inner.read(ref, "unlabelled" if ref in self.moved else "train")
        weak = pad_window(self.labels, ref.row, ref.col, ref.size, IGNORE_INDEX)
        confidence = self.confidence_window(ref)
        self._reads += 1
        draw = np.random.default_rng([self.seed, self._reads]).random(weak.shape)
        fill = self._weak_fill(ref, sample.label, sample.valid) & (draw < confidence)
        label = np.where(fill, weak, sample.label).astype(np.uint8)
        return TileSample(sample.image, label, sample.valid)


def with_weak_labels(data: TrainingData, weak: WeakLabels, seed: int = 0) -> TrainingData:
    """``data`` with weak labels added to its training tiles (module docstring).

    The tiles must lie on the grid of ``weak`` (one source image, index 0).
    """
    moved, still = [], []
    for ref in data.unlabelled.refs if data.unlabelled is not None else []:
        window = pad_window(weak.labels, ref.row, ref.col, ref.size, IGNORE_INDEX)
        share = float((window != IGNORE_INDEX).mean())
        (moved if share >= MIN_WEAK_SHARE else still).append(ref)
    source = WeakLabelSource(data.labelled.source, weak, set(moved), seed)
    summary = dict(data.summary)
    summary["weak_labels"] = {
        "products": [dataclasses.asdict(r) for r in weak.reports],
        "labelled_pixels": int((weak.labels != IGNORE_INDEX).sum()),
        "mean_confidence": float(weak.confidence[weak.labels != IGNORE_INDEX].mean())
        if (weak.labels != IGNORE_INDEX).any()
        else 0.0,
        "tiles_added": len(moved),
    }
    tiles = dict(summary.get("tiles") or {})
    tiles.update(train=len(data.labelled) + len(moved), unlabelled=len(still))
    summary["tiles"] = tiles
    return dataclasses.replace(
        data,
        labelled=TileDataset(source, list(data.labelled.refs) + moved, "train"),
        unlabelled=TileDataset(source, still, "unlabelled") if still else None,
        val=TileDataset(source, data.val.refs, "val") if data.val is not None else None,
        summary=summary,
    )


def add_weak_labels(
    data: TrainingData,
    specs: Sequence[str | ProductSpec],
    *,
    seed: int = 0,
    note: Callable[[str], Any] | None = None,
    record: str | os.PathLike[str] | None = None,
) -> TrainingData:
    """Parcel training data (:func:`~rs_reasoner_training.data.tiles.parcel_training_data`)
    plus weak labels from land-cover products; the agreement report goes to ``note``,
    and to ``record/weak_labels.json`` when ``record`` (the model folder) is given, so
    segmentation can fuse the same products with their measured reliabilities
    (:mod:`rs_reasoner.landcover.fusion`; ``model.json`` copies it).

    Reliabilities and kappa are measured on the *training* parcels only: validation
    parcels stay unseen.
    """
    from rasterio import features

    source = data.labelled.source
    frame = source.train  # type: ignore[attr-defined]
    grid = Grid(frame.crs, source.transform, tuple(source.shape))  # type: ignore[attr-defined]
    parcels = np.full(grid.shape, IGNORE_INDEX, np.uint8)
    if len(frame):
        features.rasterize(
            ((g, int(c)) for g, c in zip(frame.geometry, frame["class_id"], strict=True)),
            out=parcels,
            transform=grid.transform,
        )
    weak = prepare_weak_labels(specs, grid, data.class_names, parcels)
    if note is not None:
        for line in report_lines(weak.reports, data.class_names):
            note(line)
    if record is not None:
        write_weak_report(record, weak.reports, specs)
    return with_weak_labels(data, weak, seed)


def write_weak_report(
    folder: str | os.PathLike[str],
    reports: Sequence[ProductReport],
    specs: Sequence[str | ProductSpec],
) -> Path:
    """``weak_labels.json`` in a model folder: each product's spec and report (its
    per-class reliabilities among them)."""
    path = Path(folder) / WEAK_LABELS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    products = [
        {**dataclasses.asdict(report), "kappa": None if math.isnan(report.kappa) else
         report.kappa, "spec": str(spec) if isinstance(spec, str) else
         ":".join(p for p in (spec.path, spec.legend, spec.mapping) if p)}
        for report, spec in zip(reports, specs, strict=True)
    ]  # fmt: skip
    write_text_atomic(path, json.dumps({"products": products}, indent=1))
    return path
