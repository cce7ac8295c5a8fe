"""Weak labels from land-cover maps: does a model trained on a coarse product beat the
product, and do weak labels help a few parcels? One run, side by side.

Data: the 45 Dubai aerial images of ``shared/data/dubai`` (5 classes, Unlabeled
ignored), shrunk by ``--downscale`` (the *training grid*). A fifth of the images (seeded,
as in ``bench_training.py``) is the test set; its masks on the training grid are the
truth. Each image is given a map position (UTM 40N) so the products below are real
GeoTIFFs read through :mod:`rs_reasoner_training.weak` (reprojection, legends, mapping).

Two weak products are made from the masks of *every* image (as a land-cover map
covers the whole area), each with its own errors:

* **worldcover**: block majority on a ``--coarsen`` x coarser grid, WorldCover codes and
  colour table (legend recognised from it): Building and Road merged into Built-up,
  Vegetation = Tree cover, Land = Bare, Water = Permanent water; mapped with a CSV.
* **national**: block majority on a grid offset by half a block, stored in EPSG:4326
  (so reprojected, differently aligned), legend from a sidecar QML; keeps roads, calls
  water "Open land", and only calls a block Green when vegetation covers 60 % of it.

Labelled parcels: the masks of the first ``--budget`` fraction of the training images
(at least one image). Methods (classical = the project's LightGBM learner, fixed rounds,
no validation; rf = scikit-learn RandomForest on raw bands, the analyst's baseline):

* products alone (nearest upsampling) and their agreement-combined weak labels;
* rf / classical / U-Net on the parcels only;
* rf / classical / U-Net on the weak labels only (no parcel; confidence as sample weight,
  or as keep probability for the U-Net);
* classical / U-Net on weak labels + parcels (parcels win; reliabilities and kappa
  measured on the parcels);
* classical on all training masks (upper reference);
* "fused": a row's class scores fused at inference with the products, what ``segment
  --fuse-land-cover`` does (:mod:`rs_reasoner.models.product_fusion`: the model's
  posterior times each product's per-class likelihood from its local share; product
  reliabilities the prior 0.7, or measured on the parcels).

    .venv/bin/python bench/bench_weak_labels.py --out bench_weak_labels.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import calculate_default_transform, reproject

from rs_reasoner.atomic import write_text_atomic
from rs_reasoner.landcover.legends import WORLDCOVER
from rs_reasoner.landcover.mapping import apply_mapping, build_mapping, read_mapping_rows
from rs_reasoner.landcover.products import Grid, ProductSpec, read_product
from rs_reasoner.models.checkpoint import load_trained_model
from rs_reasoner.models.pixel_features import FeatureSpec
from rs_reasoner.models.product_fusion import fuse_with_products
from rs_reasoner.raster.band_stats import BandStats
from rs_reasoner_training.api import train_model
from rs_reasoner_training.classical import ClassicalConfig, LabelledImage, fit_classical
from rs_reasoner_training.data.band_arrays import BandArraySource, normalised_tile_image
from rs_reasoner_training.data.dataset import (
    IGNORE_INDEX,
    Role,
    TileDataset,
    TileRef,
    TileSample,
    TrainingData,
    grid_refs,
)
from rs_reasoner_training.weak.agreement import (
    boundary_weight,
    combine,
    measure,
    report_lines,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CRS_UTM = CRS.from_epsg(32640)
#: Ground size of a training-grid pixel (m) in the made-up georeference.
PIXEL_M = 2.0
CLASSES = ["Building", "Land", "Road", "Vegetation", "Water"]
#: Dubai class -> WorldCover code (Road merged into Built-up).
WORLDCOVER_CODES = {"Building": 50, "Road": 50, "Land": 60, "Vegetation": 10, "Water": 80}
WORLDCOVER_MAPPING = (
    "product class,user class\nBuilt-up,Building\n"
    "Bare / sparse vegetation,Land\nTree cover,Vegetation\n"
    "Permanent water bodies,Water\n"
)
#: Dubai class -> (code, name) of the made-up national product (water called open land).
NATIONAL = {
    "Building": (1, "Buildings"),
    "Road": (2, "Roads"),
    "Land": (3, "Open land"),
    "Vegetation": (4, "Green areas"),
    "Water": (3, "Open land"),
}
NATIONAL_MAPPING = "1,Building\n2,Road\nOpen land,Land\nGreen areas,Vegetation\n"


@dataclass
class Image:
    """One Dubai image on the training grid."""

    raw: np.ndarray  # (3, H, W) float32
    mask: np.ndarray  # (H, W) uint8 class ids, IGNORE_INDEX = Unlabeled
    grid: Grid
    role: str  # "test", "labelled" or "pool"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--downscale", type=int, default=4)
    p.add_argument("--coarsen", type=int, default=10, help="product pixel / grid pixel")
    p.add_argument("--budget", type=float, default=0.05, help="share of images with masks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pixels-per-class", type=int, default=20_000)
    p.add_argument("--deep", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--deep-seconds", type=float, default=60.0)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--steps-per-epoch", type=int, default=25)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--only", nargs="+", default=None, help="rows whose name has one of these")
    return p.parse_args(argv)


# --- data and products --------------------------------------------------------------


def load_images(args: argparse.Namespace) -> list[Image]:
    """Dubai images on the training grid, placed 10 km apart in UTM 40N."""
    from rs_reasoner_training.data.folder import (
        DUBAI_COLOURS,
        FolderSource,
        MaskTable,
        dubai_pairs,
    )

    pairs = dubai_pairs(args.data / "dubai")
    order = np.random.default_rng(args.seed).permutation(len(pairs))
    n_test = math.ceil(0.2 * len(pairs))
    n_lab = max(1, math.ceil(args.budget * (len(pairs) - n_test) - 1e-9))
    source = FolderSource(pairs, MaskTable.from_colours(DUBAI_COLOURS), args.downscale)
    images = []
    for rank, index in enumerate(order):
        image, mask = source.load(int(index))
        role = "test" if rank < n_test else "labelled" if rank < n_test + n_lab else "pool"
        transform = Affine(PIXEL_M, 0, 300_000 + 10_000 * rank, 0, -PIXEL_M, 2_780_000)
        grid = Grid(CRS_UTM, transform, mask.shape)
        images.append(Image(np.moveaxis(image, -1, 0).astype(np.float32), mask, grid, role))
    return images


def block_majority(
    mask: np.ndarray,
    k: int,
    factor: int,
    offset: int = 0,
    min_share: dict[int, float] | None = None,
) -> np.ndarray:
    """(ceil((H+offset)/f), ...) majority class of each block (IGNORE_INDEX if none);
    a class in ``min_share`` only wins with at least that share of the block."""
    padded = np.full((mask.shape[0] + offset, mask.shape[1] + offset), IGNORE_INDEX, np.uint8)
    padded[offset:, offset:] = mask
    rows, cols = math.ceil(padded.shape[0] / factor), math.ceil(padded.shape[1] / factor)
    full = np.full((rows * factor, cols * factor), IGNORE_INDEX, np.uint8)
    full[: padded.shape[0], : padded.shape[1]] = padded
    blocks = full.reshape(rows, factor, cols, factor).transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    counts = np.stack([(blocks == c).sum(-1) for c in range(k)], -1).astype(np.float64)
    labelled = counts.sum(-1)
    for c, share in (min_share or {}).items():
        counts[..., c] = np.where(
            counts[..., c] >= share * np.maximum(labelled, 1), counts[..., c], 0
        )
    out = counts.argmax(-1).astype(np.uint8)
    out[counts.max(-1) == 0] = IGNORE_INDEX
    return out


def write_products(images: list[Image], folder: Path, factor: int) -> list[list[ProductSpec]]:
    """Both weak products of each image as GeoTIFFs (+ legend/mapping files); their specs."""
    (folder / "worldcover_mapping.csv").write_text(WORLDCOVER_MAPPING)
    (folder / "national_mapping.csv").write_text(NATIONAL_MAPPING)
    wc_lut = np.zeros(256, np.uint8)
    nat_lut = np.zeros(256, np.uint8)
    for c, name in enumerate(CLASSES):
        wc_lut[c] = WORLDCOVER_CODES[name]
        nat_lut[c] = NATIONAL[name][0]
    specs = []
    k = len(CLASSES)
    veg = CLASSES.index("Vegetation")
    for i, im in enumerate(images):
        t = im.grid.transform
        coarse = block_majority(im.mask, k, factor)
        wc_path = folder / f"worldcover_{i}.tif"
        coarse_t = t @ Affine.scale(factor)
        with rasterio.open(
            wc_path,
            "w",
            driver="GTiff",
            width=coarse.shape[1],
            height=coarse.shape[0],
            count=1,
            dtype="uint8",
            crs=CRS_UTM,
            transform=coarse_t,
            nodata=0,
        ) as ds:
            ds.write(wc_lut[coarse], 1)
            ds.write_colormap(1, {c: _rgb(h) for c, h in WORLDCOVER.colours.items()})
        half = factor // 2
        shifted = block_majority(im.mask, k, factor, half, {veg: 0.6})
        shifted_t = t @ Affine.translation(-half, -half) @ Affine.scale(factor)
        codes = nat_lut[shifted]
        nat_path = folder / f"national_{i}.tif"
        bounds = rasterio.transform.array_bounds(*codes.shape, shifted_t)
        dst_t, w, h = calculate_default_transform(
            CRS_UTM, "EPSG:4326", codes.shape[1], codes.shape[0], *bounds
        )
        out = np.zeros((h, w), np.uint8)
        reproject(
            codes,
            out,
            src_transform=shifted_t,
            src_crs=CRS_UTM,
            dst_transform=dst_t,
            dst_crs="EPSG:4326",
            src_nodata=0,
            dst_nodata=0,
        )
        with rasterio.open(
            nat_path,
            "w",
            driver="GTiff",
            width=w,
            height=h,
            count=1,
            dtype="uint8",
            crs="EPSG:4326",
            transform=dst_t,
            nodata=0,
        ) as ds:
            ds.write(out, 1)
        entries = "".join(
            f'<paletteEntry value="{code}" label="{label}" color="#000000"/>'
            for code, label in sorted(set(NATIONAL.values()))
        )
        nat_path.with_suffix(".qml").write_text(
            f"<qgis><pipe><rasterrenderer><colorPalette>{entries}</colorPalette>"
            "</rasterrenderer></pipe></qgis>"
        )
        specs.append(
            [
                ProductSpec(str(wc_path), None, str(folder / "worldcover_mapping.csv")),
                ProductSpec(str(nat_path), None, str(folder / "national_mapping.csv")),
            ]
        )
    return specs


def _rgb(hex_colour: str) -> tuple[int, int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255


@dataclass
class Weak:
    """Weak labels of every image: per product and combined (with and without parcels)."""

    names: list[str]
    per_product: list[list[np.ndarray]]  # [image][product] (H, W) uint8
    ratios: list[float]
    combined: list[tuple[np.ndarray, np.ndarray]]  # [image] (labels, confidence), no parcels
    combined_parcels: list[tuple[np.ndarray, np.ndarray]]  # reliabilities from the parcels
    single: list[tuple[np.ndarray, np.ndarray]]  # worldcover alone, no parcels
    reliability: dict[str, list[np.ndarray]]  # "weak" / "parcels": (K,) per product
    given: list[np.ndarray]  # (K,) bool per product: the classes its mapping gives
    report: list[str]


def weak_labels(images: list[Image], specs: list[list[ProductSpec]]) -> Weak:
    """Read every product through the weak-label modules and combine them two ways."""
    per_product, names, ratios = [], [], []
    given = [np.zeros(len(CLASSES), bool) for _ in specs[0]]
    for im, image_specs in zip(images, specs, strict=True):
        mapped = []
        names, ratios = [], []
        for spec in image_specs:
            product = read_product(spec, im.grid)
            table = build_mapping(
                product.legend, CLASSES, product.name, read_mapping_rows(spec.mapping), spec.mapping
            )
            mapped.append(apply_mapping(product.codes, table))
            given[len(mapped) - 1][list(set(table.values()))] = True
            names.append(product.name.split("_")[0])
            ratios.append(product.pixel_ratio)
        per_product.append(mapped)
    labelled = [i for i, im in enumerate(images) if im.role == "labelled"]
    flat = [
        np.concatenate([per_product[i][p].ravel() for i in labelled]) for p in range(len(names))
    ]
    parcels = np.concatenate([images[i].mask.ravel() for i in labelled])
    with_parcels = [
        measure(n, f, parcels, CLASSES, r) for n, f, r in zip(names, flat, ratios, strict=True)
    ]
    without = [measure(n, f, None, CLASSES, r) for n, f, r in zip(names, flat, ratios, strict=True)]

    def rel(reports: list[Any]) -> list[np.ndarray]:
        return [np.array([r.reliability[c] for c in CLASSES], np.float32) for r in reports]

    def combined(reports: list[Any], which: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for mapped in per_product:
            labels = [mapped[p] for p in which]
            bounds = [boundary_weight(mapped[p], ratios[p]) for p in which]
            out.append(combine(labels, [rel(reports)[p] for p in which], bounds))
        return out

    return Weak(
        names,
        per_product,
        ratios,
        combined(without, [0, 1]),
        combined(with_parcels, [0, 1]),
        combined(without, [0]),
        {"weak": rel(without), "parcels": rel(with_parcels)},
        given,
        report_lines(with_parcels, CLASSES),
    )


# --- methods -------------------------------------------------------------------------


def _labels_of(images: list[Image], weak: Weak, mode: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(labels, per-pixel weight) of each non-test image for a training mode:
    ``parcels`` (labelled images' masks), ``weak``, ``weak+parcels``, ``all``."""
    out = []
    for i, im in enumerate(images):
        none = np.full(im.mask.shape, IGNORE_INDEX, np.uint8)
        ones = np.ones(im.mask.shape, np.float32)
        if im.role == "test":
            out.append((none, ones))
            continue
        parcel = im.mask if im.role == "labelled" or mode == "all" else none
        if mode in ("parcels", "all"):
            out.append((parcel, ones))
            continue
        pick = {"weak": weak.combined, "worldcover": weak.single}
        labels, conf = pick.get(mode, weak.combined_parcels)[i]
        if mode == "weak+parcels":
            has = parcel != IGNORE_INDEX
            labels = np.where(has, parcel, labels).astype(np.uint8)
            conf = np.where(has, 1.0, conf).astype(np.float32)
        out.append((labels, conf))
    return out


def predicted(images: list[Image]) -> list[int]:
    """Indices of the images each method predicts: the test images."""
    return [i for i, im in enumerate(images) if im.role == "test"]


def _stats(images: list[Image]) -> BandStats:
    train = np.concatenate([im.raw.reshape(3, -1) for im in images if im.role != "test"], axis=1)
    return BandStats.from_samples(train, [1, 2, 3], ["red", "green", "blue"], "uint8")


def run_rf(images, weak, mode, args, work) -> list[np.ndarray]:
    from sklearn.ensemble import RandomForestClassifier

    xs, ys, ws = [], [], []
    for im, (labels, conf) in zip(images, _labels_of(images, weak, mode), strict=True):
        keep = labels != IGNORE_INDEX
        xs.append(im.raw[:, keep].T)
        ys.append(labels[keep])
        ws.append(conf[keep])
    x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
    if len(y) > 100_000:
        idx = np.random.default_rng(args.seed).choice(len(y), 100_000, replace=False)
        x, y, w = x[idx], y[idx], w[idx]
    rf = RandomForestClassifier(n_estimators=100, n_jobs=args.threads, random_state=args.seed)
    rf.fit(x, y, sample_weight=w)
    return [
        rf.classes_[rf.predict_proba(images[i].raw.reshape(3, -1).T).argmax(1)].reshape(
            images[i].mask.shape
        )
        for i in predicted(images)
    ]


def run_classical(images, weak, mode, args, work) -> list[np.ndarray]:
    stats = _stats(images)
    spec = FeatureSpec.for_bands(3, {"red": 0, "green": 1, "blue": 2})
    train = [
        LabelledImage(im.raw, np.ones(im.mask.shape, bool), labels, weight=conf)
        for im, (labels, conf) in zip(images, _labels_of(images, weak, mode), strict=True)
        if im.role != "test"
    ]
    config = ClassicalConfig(
        threads=args.threads, seed=args.seed, max_pixels_per_class=args.pixels_per_class
    )
    # A product that omits a class (worldcover has no roads) gives it no training pixel:
    # the learner is fitted on the classes present, the others score 0.
    seen = sorted(set().union(*(np.unique(t.labels[t.labels != IGNORE_INDEX]) for t in train)))
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    lut[seen] = np.arange(len(seen))
    train = [LabelledImage(t.raw, t.valid, lut[t.labels], weight=t.weight) for t in train]
    model = fit_classical(train, [CLASSES[c] for c in seen], stats, spec, config)
    out = []
    for im in (images[i] for i in predicted(images)):
        probs = np.zeros((len(CLASSES), *im.mask.shape), np.float32)
        probs[seen] = model.predict_proba(im.raw, np.ones(im.mask.shape, bool))
        out.append(probs)
    return out


class _KeepByConfidence:
    """Training tiles whose labels are kept with probability = confidence at each read."""

    def __init__(self, inner: BandArraySource, confidence: list[np.ndarray], seed: int) -> None:
        self.inner, self.confidence, self.seed, self.reads = inner, confidence, seed, 0

    def read(self, ref: TileRef, role: Role) -> TileSample:
        from rs_reasoner_training.data.dataset import pad_window

        sample = self.inner.read(ref, role)
        if role == "train":
            self.reads += 1
            conf = pad_window(self.confidence[ref.source], ref.row, ref.col, ref.size, 0.0)
            drop = np.random.default_rng([self.seed, self.reads]).random(conf.shape) >= conf
            sample = TileSample(
                sample.image,
                np.where(drop, IGNORE_INDEX, sample.label).astype(np.uint8),
                sample.valid,
            )
        return sample


def run_deep(images, weak, mode, args, work) -> list[np.ndarray]:
    stats = _stats(images)
    labels = _labels_of(images, weak, mode)
    valid = [np.ones(im.mask.shape, bool) for im in images]
    inner = BandArraySource(
        [im.raw for im in images], valid, {"train": [lab for lab, _ in labels]}, stats
    )
    source = _KeepByConfidence(inner, [c for _, c in labels], args.seed)
    tile = 96
    refs = [
        ref
        for i, im in enumerate(images)
        if im.role != "test"
        for ref in grid_refs(i, *im.mask.shape, tile)
        if (labels[i][0][ref.row : ref.row + tile, ref.col : ref.col + tile] != IGNORE_INDEX).any()
    ]
    data = TrainingData(
        CLASSES,
        TileDataset(source, refs, "train"),
        summary={"source": "bench", "tile_size": tile, "band_stats": stats.to_dict()},
    )
    folder = work / f"deep-{mode}"
    result = train_model(
        data,
        folder,
        model="unet",
        pretrained=False,
        base_channels=16,
        depth=3,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        time_budget_s=args.deep_seconds,
        batch_size=8,
        crop_size=64,
        lr=3e-3,
        semi_supervised=False,
        verifier="none",
        device="cpu",
        seed=args.seed,
        resume=False,
        progress_bar=False,
    )
    model, _, _ = load_trained_model(result.best_path)
    out = []
    with torch.inference_mode():
        for im in (images[i] for i in predicted(images)):
            x = normalised_tile_image(im.raw, np.ones(im.mask.shape, bool), stats)
            logits = model(torch.from_numpy(np.moveaxis(x, -1, 0)).unsqueeze(0))
            out.append(logits[0].softmax(0).numpy())
    return out


def _product(p: int) -> Callable[..., list[np.ndarray]]:
    def run(images, weak, mode, args, work) -> list[np.ndarray]:
        return [weak.per_product[i][p] for i in predicted(images)]

    return run


def _combined(images, weak, mode, args, work) -> list[np.ndarray]:
    source = weak.combined if mode == "weak" else weak.combined_parcels
    return [source[i][0] for i in predicted(images)]


# --- scores --------------------------------------------------------------------------


def score(images: list[Image], preds: list[np.ndarray]) -> dict[str, Any]:
    """mIoU over the classes present in the test masks (a pixel a product leaves
    unlabelled counts as wrong)."""
    k = len(CLASSES)
    cm = np.zeros((k, k + 1), np.int64)
    tests = [im for im in images if im.role == "test"]
    for im, pred in zip(tests, preds, strict=True):
        pred = pred.argmax(0) if pred.ndim == 3 else pred
        keep = im.mask != IGNORE_INDEX
        p = np.where(pred[keep] == IGNORE_INDEX, k, pred[keep]).astype(np.int64)
        cm += np.bincount(
            im.mask[keep].astype(np.int64) * (k + 1) + p, minlength=k * (k + 1)
        ).reshape(k, k + 1)
    tp = np.diag(cm[:, :k]).astype(np.float64)
    union = cm.sum(1) + cm[:, :k].sum(0) - tp
    present = cm.sum(1) > 0
    iou = np.where(present, tp / np.maximum(union, 1), np.nan)
    return {
        "miou": float(np.nanmean(iou)),
        "iou": {
            c: None if math.isnan(v) else round(float(v), 3)
            for c, v in zip(CLASSES, iou, strict=True)
        },
        "pixel_accuracy": round(float(tp.sum() / max(cm.sum(), 1)), 4),
    }


def fused(base: str, products: list[int], reliability: str) -> Callable[..., list[np.ndarray]]:
    """The ``base`` row's class scores fused with ``products``
    (:func:`~rs_reasoner.models.product_fusion.fuse_with_products`); reliabilities of the
    products from ``reliability`` ("weak": the prior, "parcels": measured on the parcels),
    the classes each gives from its mapping."""

    def run(images, weak, mode, args, work, outputs) -> list[np.ndarray]:
        return [
            fuse_with_products(
                probs,
                [weak.per_product[i][p] for p in products],
                [weak.reliability[reliability][p] for p in products],
                [weak.ratios[p] for p in products],
                [weak.given[p] for p in products],
            )
            for i, probs in zip(predicted(images), outputs[base], strict=True)
        ]

    run.fusion = True  # type: ignore[attr-defined]
    return run


#: (row name, labels used, method).
ROWS: list[tuple[str, str, Callable[..., list[np.ndarray]]]] = [
    ("product worldcover (10x coarser)", "weak", _product(0)),
    ("product national (10x, EPSG:4326)", "weak", _product(1)),
    ("products combined (agreement)", "weak", _combined),
    ("products combined (parcel reliabilities)", "weak+parcels", _combined),
    ("RandomForest, parcels only", "parcels", run_rf),
    ("classical, parcels only", "parcels", run_classical),
    ("RandomForest, weak only", "weak", run_rf),
    ("classical, worldcover only", "worldcover", run_classical),
    ("  fused with worldcover", "worldcover", fused("classical, worldcover only", [0], "weak")),
    ("classical, weak only", "weak", run_classical),
    ("  fused with both products", "weak", fused("classical, weak only", [0, 1], "weak")),
    ("classical, weak + parcels", "weak+parcels", run_classical),
    (
        "  fused with both (parcel reliabilities)",
        "weak+parcels",
        fused("classical, weak + parcels", [0, 1], "parcels"),
    ),
    ("U-Net, parcels only", "parcels", run_deep),
    ("U-Net, worldcover only", "worldcover", run_deep),
    ("  U-Net fused with worldcover", "worldcover", fused("U-Net, worldcover only", [0], "weak")),
    ("U-Net, weak only", "weak", run_deep),
    ("U-Net, weak + parcels", "weak+parcels", run_deep),
    ("classical, all training masks (reference)", "all", run_classical),
]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.data / "dubai").is_dir():
        print(f"shared data not found at {args.data}; pass --data.", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    images = load_images(args)
    roles = {r: sum(im.role == r for im in images) for r in ("test", "labelled", "pool")}
    print(f"dubai, grid 1/{args.downscale}, products {args.coarsen}x coarser; images {roles}")
    results: dict[str, Any] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-weak-") as tmp:
        work = Path(tmp)
        weak = weak_labels(images, write_products(images, work, args.coarsen))
        print("\n".join(weak.report))
        for name, mode, run in ROWS:
            if ("U-Net" in name and not args.deep) or (
                args.only and not any(o in name for o in args.only)
            ):
                continue
            t0 = time.monotonic()
            if getattr(run, "fusion", False):
                preds = run(images, weak, mode, args, work, outputs)
            else:
                preds = outputs[name] = run(images, weak, mode, args, work)
            result = score(
                images,
                [
                    p
                    for i, p in zip(predicted(images), preds, strict=True)
                    if images[i].role == "test"
                ],
            )
            result["seconds"] = round(time.monotonic() - t0, 1)
            results[name] = result
            print(
                f"  {name:<44} mIoU {result['miou']:.3f}  acc {result['pixel_accuracy']:.3f}"
                f"  {result['seconds']:6.1f}s  IoU {result['iou']}",
                flush=True,
            )
    elapsed = time.monotonic() - started
    print(f"total {elapsed / 60:.1f} min on {platform.processor() or platform.machine()}")
    if args.out:
        options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        write_text_atomic(
            args.out,
            json.dumps(
                {
                    "options": options,
                    "roles": roles,
                    "agreement": weak.report,
                    "results": results,
                    "seconds": round(elapsed, 1),
                },
                indent=1,
            ),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
