"""Does fine-tuning beat the analyst's RandomForest? All methods side by side, one run.

Three sets, each split spatially into training, validation and test labels:

* **dubai**: the 45 aerial RGB images of ``shared/data/dubai`` (6 classes, Unlabeled
  ignored), shrunk by ``--downscale``. A fifth of the images (seeded) is the test set,
  never seen in training. Of the others, the first ``budget`` fraction (5 %, 10 %, 25 %)
  keeps its masks; the rest is the unlabelled pool of the semi-supervised methods. Inside
  the labelled images, a checkerboard of ``--block`` px squares sends one square in
  five to validation (what ``auto`` selects on and early stopping watches).
* **slovenia**: the 68-band Sentinel-2 NDVI time series (NaN = cloud) with its land-use
  polygons (class field LULC_NAME). Parcels are split by the checkerboard square of their
  centroid (``--slovenia-block`` px): black squares are the test parcels; of the white
  ones, a quarter of each class's parcels (at least one of a class with three) is
  validation.
* **spacenet**: the Atlanta WorldView-2 panchromatic chip and its 43 building footprints,
  building vs. other (the footprints are complete, so every other pixel is "other").
  Checkerboard of ``--spacenet-block`` px squares: black = test, white = training, with
  one white square in five for validation.

Methods (one run each, on the same labels):

* ``rf``: the analyst's baseline, scikit-learn RandomForest (100 trees) on the raw bands
  of the training pixels (at most ``--rf-pixels`` of them, as a QGIS plugin samples);
* ``classical``: the classical learner of ``train`` (LightGBM on normalised bands,
  spectral indices, band summaries and local statistics; :mod:`rs_reasoner_training.classical`),
  refitted on training + validation labels where those are too few to steer it (its
  validation score is that of the model fitted without them, as in ``train``);
* ``random-forest`` (only when named in ``--methods``): ``train --model random-forest``
  (LightGBM in forest mode on the bands, classes at their true proportions;
  :mod:`rs_reasoner_training.forest`), served refitted on training + validation labels,
  scored by the one fitted without them; not an ``auto`` candidate by default;
* ``supervised``: the U-Net of ``train`` on every band (class-weighted loss, warm-up),
  ``--epochs`` x ``--steps-per-epoch`` optimizer steps (or ``--deep-seconds``), the
  checkpoint best on the validation labels;
* ``teacher_student``: the same with the EMA teacher's pseudo-labels on the unlabelled
  tiles (tiles without training or validation labels, test areas included: the part of
  the user's raster nobody labelled);
* ``purified``: teacher-student whose pseudo-labels the classical learner verifies
  (co-training, what ``train`` does without vision-language weights);
* ``auto``: what ``train`` serves by default: among classical, supervised and purified,
  the best on the validation labels (mIoU over the classes in the truth or the
  prediction), but the classical learner where a network scores best and validation
  holds fewer than three regions of a class (``train``'s rule,
  :func:`rs_reasoner_training.auto.choose`); its time is the sum of the three.

Scores on the test labels: pixel mIoU (over the classes present in the truth) and parcel
accuracy (a test parcel is right when the majority of its predicted pixels is its class;
Dubai's parcels are the connected regions of each class in the test masks). Validation
parcel accuracy (printed, not used by ``auto``) counts the connected regions of each class
in the validation labels (at least ``VAL_REGION_PIXELS``). Wall time
includes feature computation and prediction of the test images.

**Splits.** Each set is run ``--splits`` times (seeds ``--seed``, ``--seed + 1``, ...):
the seed draws Dubai's test and labelled images, the validation squares and parcels, and
the learners' sampling. Two labelled images are a draw, not a benchmark: the table gives
the mean over splits, how many splits each method beats the RandomForest on both
measures, then every split. ``--merge`` combines runs (a method added later is run alone
and merged; ``auto`` is chosen again).

    .venv/bin/python bench/bench_training.py --out bench_training.json
    .venv/bin/python bench/bench_training.py --methods random-forest --out forest.json
    .venv/bin/python bench/bench_training.py --merge bench_training.json forest.json
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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rs_reasoner.atomic import write_text_atomic
from rs_reasoner.models.checkpoint import load_trained_model
from rs_reasoner.models.classical import ClassicalModel
from rs_reasoner.models.pixel_features import FeatureSpec
from rs_reasoner_training.api import train_model
from rs_reasoner_training.auto import ClassicalVerifier, choose
from rs_reasoner_training.classical import (
    ClassicalConfig,
    fit_classical_to_serve,
)
from rs_reasoner_training.data.band_arrays import BandArraySource, normalised_tile_image
from rs_reasoner_training.data.dataset import (
    IGNORE_INDEX,
    TileDataset,
    TileRef,
    TrainingData,
    grid_refs,
)
from rs_reasoner_training.forest import ForestConfig, fit_forest_to_serve
from rs_reasoner_training.metrics import region_counts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_sets import (  # noqa: E402
    BenchSet,
    Scene,
    SplitSkipped,
    load_sets,
    region_parcels,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SETS = ("dubai", "slovenia", "spacenet")
METHODS = {
    "rf": "RandomForest (raw bands)",
    "classical": "classical (LightGBM)",
    "random-forest": "random forest (train's)",
    "supervised": "U-Net supervised",
    "teacher_student": "teacher-student",
    "purified": "+ purification",
    "auto": "auto (what train serves)",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults: every set and method in about 10 min on 2 cores)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--methods", nargs="+", choices=list(METHODS),
                   default=[m for m in METHODS if m != "random-forest"])
    p.add_argument("--budgets", type=float, nargs="+", default=[0.05, 0.10, 0.25])
    p.add_argument("--downscale", type=int, default=4, help="shrink Dubai images by this")
    p.add_argument("--block", type=int, default=64, help="Dubai validation squares, px")
    p.add_argument("--slovenia-block", type=int, default=25)
    p.add_argument("--spacenet-block", type=int, default=150)
    p.add_argument("--seed", type=int, default=0, help="seed of the first split")
    p.add_argument("--splits", type=int, default=5,
                   help="splits per set, seeds --seed, --seed + 1, ... (a draw of two labelled "
                        "images decides nothing alone: the table gives the mean and each split)")
    p.add_argument("--rf-pixels", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--deep-seconds", type=float, default=None,
                   help="time cap per deep run (default none: --epochs x --steps-per-epoch "
                        "optimizer steps, so scores do not move with the machine's load)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--steps-per-epoch", type=int, default=25)
    p.add_argument("--base-channels", type=int, default=16, help="U-Net width")
    p.add_argument("--workdir", type=Path, default=None, help="checkpoints (default: temp)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                   help="train nothing: combine these runs' results (the same sets and "
                        "splits; a later file adds or replaces methods), choose auto again "
                        "and average (a method added later needs no rerun of the others)")
    return p.parse_args(argv)


# --- methods ----------------------------------------------------------------------------


def _scored(s: Scene) -> bool:
    """Scenes a method must predict: those with validation or test labels."""
    return bool((s.val != IGNORE_INDEX).any() or (s.test != IGNORE_INDEX).any())


def _empty(bench: BenchSet, s: Scene) -> np.ndarray:
    return np.zeros((len(bench.class_names), *s.valid.shape), np.float32)


def predict_rf(bench: BenchSet, args: argparse.Namespace, work: Path) -> list[np.ndarray]:
    """RandomForest on raw bands; (K, H, W) probabilities of each scene."""
    from sklearn.ensemble import RandomForestClassifier

    xs, ys = [], []
    for s in bench.scenes:
        keep = (s.train != IGNORE_INDEX) & s.valid
        xs.append(s.raw[:, keep].T)
        ys.append(s.train[keep])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(y) > args.rf_pixels:
        idx = np.random.default_rng(args.seed).choice(len(y), args.rf_pixels, replace=False)
        x, y = x[idx], y[idx]
    rf = RandomForestClassifier(n_estimators=100, n_jobs=args.threads, random_state=args.seed)
    rf.fit(x, y)
    out = []
    for s in bench.scenes:
        probs = _empty(bench, s)
        if _scored(s):
            p = rf.predict_proba(s.raw[:, s.valid].T)
            for j, c in enumerate(rf.classes_):
                probs[c][s.valid] = p[:, j]
        out.append(probs)
    return out


def fit_classical_models(
    bench: BenchSet, args: argparse.Namespace
) -> tuple[ClassicalModel, ClassicalModel]:
    """The classical learner as ``train`` fits it: (model served, model scored on the
    validation labels); see :func:`fit_classical_to_serve`."""
    spec = FeatureSpec.for_bands(bench.stats.count, bench.roles)
    config = ClassicalConfig(threads=args.threads, seed=args.seed)
    return fit_classical_to_serve(bench.images("train"), bench.class_names, bench.stats, spec,
                                  config, val=bench.images("val"))  # fmt: skip


def predict_classical(
    bench: BenchSet, args: argparse.Namespace, work: Path
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Classical learner; (K, H, W) probabilities of each scene from the model served
    (test) and from the model scored on validation (the same one unless refitted)."""
    served, scored = fit_classical_models(bench, args)
    bench.classical = served  # the verifier of the purified run

    def probs(model: ClassicalModel) -> list[np.ndarray]:
        return [model.predict_proba(s.raw, s.valid) if _scored(s) else _empty(bench, s)
                for s in bench.scenes]  # fmt: skip

    test = probs(served)
    return test, (test if scored is served else probs(scored))


def predict_forest(
    bench: BenchSet, args: argparse.Namespace, work: Path
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``auto``'s random forest (LightGBM in forest mode on the bands), refitted on every
    label to serve; (test, validation) probabilities as :func:`predict_classical`."""
    config = ForestConfig(threads=args.threads, seed=args.seed)
    served, scored = fit_forest_to_serve(bench.images("train"), bench.class_names, bench.stats,
                                         config, val=bench.images("val"))  # fmt: skip

    def probs(model: ClassicalModel) -> list[np.ndarray]:
        return [model.predict_proba(s.raw, s.valid) if _scored(s) else _empty(bench, s)
                for s in bench.scenes]  # fmt: skip

    return probs(served), probs(scored)


def deep_data(bench: BenchSet, tile: int) -> TrainingData:
    """The set as training tiles of normalised bands (train / val / unlabelled roles)."""
    source = BandArraySource(
        [s.raw for s in bench.scenes], [s.valid for s in bench.scenes],
        {"train": [s.train for s in bench.scenes], "val": [s.val for s in bench.scenes]},
        bench.stats,
    )  # fmt: skip
    roles: dict[str, list[TileRef]] = {"train": [], "val": [], "unlabelled": []}
    for i, s in enumerate(bench.scenes):
        for ref in grid_refs(i, *s.valid.shape, tile):
            window = (slice(ref.row, ref.row + tile), slice(ref.col, ref.col + tile))
            if not s.valid[window].any():
                continue
            has_train = (s.train[window] != IGNORE_INDEX).any()
            has_val = (s.val[window] != IGNORE_INDEX).any()
            if has_train:
                roles["train"].append(ref)
            if has_val:
                roles["val"].append(ref)
            if not has_train and not has_val:
                roles["unlabelled"].append(ref)
    summary = {"source": "bench", "tile_size": tile, "band_stats": bench.stats.to_dict(),
               "band_roles": bench.roles,
               "tiles": {k: len(v) for k, v in roles.items()}}  # fmt: skip
    return TrainingData(
        class_names=bench.class_names,
        labelled=TileDataset(source, roles["train"], "train"),
        unlabelled=TileDataset(source, roles["unlabelled"], "unlabelled")
        if roles["unlabelled"] else None,
        val=TileDataset(source, roles["val"], "val") if roles["val"] else None,
        summary=summary,
    )  # fmt: skip


def _deep_probs(bench: BenchSet, checkpoint: Path) -> list[np.ndarray]:
    """Softmax of the model in ``checkpoint`` over each whole scene."""
    model, _, _ = load_trained_model(checkpoint)
    out = []
    with torch.inference_mode():
        for s in bench.scenes:
            if not _scored(s):
                out.append(_empty(bench, s))
                continue
            image = normalised_tile_image(s.raw, s.valid, bench.stats)
            x = torch.from_numpy(np.moveaxis(image, -1, 0)).unsqueeze(0)
            probs = model(x).softmax(dim=1)[0].numpy()
            probs[:, ~s.valid] = 0.0
            out.append(probs)
    return out


def _deep(method: str) -> Callable[[BenchSet, argparse.Namespace, Path], list[np.ndarray]]:
    """A deep method: U-Net supervised, teacher-student, or teacher-student + purification."""

    def run(bench: BenchSet, args: argparse.Namespace, work: Path) -> list[np.ndarray]:
        tile, crop = DEEP_TILES[bench.name.split()[0]]
        data = deep_data(bench, tile)
        options: dict[str, Any] = dict(semi_supervised=method != "supervised", verifier="none")
        if method == "purified":
            # The verifier, as train's auto uses it without VLM weights: the classical
            # learner fitted on the same labels (co-training).
            if bench.classical is None:
                bench.classical = fit_classical_models(bench, args)[0]
            options["verifier"] = ClassicalVerifier(bench.classical)
        folder = work / method
        train_model(
            data, folder, model="unet", pretrained=False, base_channels=args.base_channels,
            depth=3, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
            time_budget_s=args.deep_seconds, batch_size=8, crop_size=crop, lr=3e-3,
            ema_max_decay=0.99, device="cpu", seed=args.seed, resume=False,
            progress_bar=False, **options,
        )  # fmt: skip
        return _deep_probs(bench, folder / "best.pt")

    return run


PREDICTORS = {
    "rf": predict_rf,
    "classical": predict_classical,
    "random-forest": predict_forest,
    "supervised": _deep("supervised"),
    "teacher_student": _deep("teacher_student"),
    "purified": _deep("purified"),
}

#: Tile and crop side of the deep methods per set (pixels).
DEEP_TILES = {"dubai": (96, 64), "slovenia": (32, 32), "spacenet": (128, 96)}


# --- scores -----------------------------------------------------------------------------


#: Smallest validation region counted as a parcel (pixels).
VAL_REGION_PIXELS = 16


def score(
    bench: BenchSet, probs: list[np.ndarray], role: str = "test", classes: str = "truth"
) -> dict[str, Any]:
    """mIoU, per-class IoU and (test) parcel accuracy of per-scene probabilities.

    mIoU averages the classes present in the truth (test), or, as ``train`` scores its
    candidates, those present in the truth or the prediction (``classes``).
    """
    k = len(bench.class_names)
    cm = np.zeros((k, k), np.int64)
    right = total = 0
    for s, p in zip(bench.scenes, probs, strict=True):
        truth = getattr(s, role)
        keep = (truth != IGNORE_INDEX) & s.valid
        if not keep.any():
            continue
        pred = p.argmax(axis=0)
        cm += np.bincount(truth[keep].astype(np.int64) * k + pred[keep],
                          minlength=k * k).reshape(k, k)  # fmt: skip
        # Test parcels are the set's own; validation ones, the connected regions of each
        # class in the validation labels (what ``train`` can see of parcels).
        parcels = s.parcels if role == "test" else region_parcels(truth, VAL_REGION_PIXELS)
        ids = parcels[keep]
        for pid in np.unique(ids[ids > 0]):
            inside = ids == pid
            label = np.bincount(truth[keep][inside], minlength=k).argmax()
            votes = np.bincount(pred[keep][inside], minlength=k).argmax()
            right += int(label == votes)
            total += 1
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    # Classes present in the truth (a class absent from it has no IoU to measure; its
    # false positives still lower the IoU of the classes they were taken from).
    counted = cm.sum(1) > 0 if classes == "truth" else union > 0
    iou = np.where(counted, tp / np.maximum(union, 1), np.nan)
    return {
        "miou": float(np.nanmean(iou)) if counted.any() else math.nan,
        "iou": {n: (None if math.isnan(v) else round(float(v), 4))
                for n, v in zip(bench.class_names, iou, strict=True)},  # fmt: skip
        "parcel_accuracy": right / total if total else math.nan,
        "parcels": total,
        "pixel_accuracy": float(tp.sum() / max(cm.sum(), 1)),
    }


def run_set(bench: BenchSet, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every method on one set, then ``auto``; results keyed by method."""
    print(f"\n{bench.name}: {len(bench.class_names)} classes, {bench.stats.count} bands, "
          f"labelled pixels {bench.counts()}; {'; '.join(bench.notes)}", flush=True)  # fmt: skip
    out: dict[str, Any] = {"notes": bench.notes, "pixels": bench.counts(), "methods": {}}
    folder = work / bench.name.replace(" ", "-").replace("%", "pc")
    for method in args.methods:
        if method == "auto":
            continue
        started = time.monotonic()
        probs = PREDICTORS[method](bench, args, folder)
        # A predictor may score validation with another model (one not refitted on it).
        probs, val_probs = probs if isinstance(probs, tuple) else (probs, probs)
        result = score(bench, probs)
        val = score(bench, val_probs, "val", classes="truth or prediction")
        result["val_miou"] = val["miou"]
        result["val_parcel_accuracy"] = val["parcel_accuracy"]
        result["seconds"] = round(time.monotonic() - started, 1)
        out["methods"][method] = result
        _print(method, result)
    if "auto" in args.methods:
        regions = np.zeros(len(bench.class_names), np.int64)
        for s in bench.scenes:
            regions += region_counts(np.where(s.valid, s.val, IGNORE_INDEX), len(regions))
        out["validation_regions"] = dict(zip(bench.class_names, regions.tolist(), strict=True))
        out["methods"]["auto"] = auto_choice(out["methods"], out["validation_regions"])
        _print("auto", out["methods"]["auto"])
    return out


def auto_choice(methods: dict[str, Any], regions: dict[str, int]) -> dict[str, Any]:
    """What ``train`` (model auto) serves: of its candidates (classical learner, U-Net,
    teacher-student + purification), the one ``train``'s rule chooses (the best validation
    mIoU, but the classical learner when validation holds too few regions of a class:
    :func:`rs_reasoner_training.auto.choose`); its time is that of every candidate (auto
    trains them all)."""
    candidates = {m: r for m, r in methods.items() if m in AUTO_CANDIDATES}
    best, reason = choose({m: r["val_miou"] for m, r in candidates.items()}, regions)
    return {**candidates[best], "chosen": best, "reason": reason,
            "seconds": round(sum(r["seconds"] for r in candidates.values()), 1)}  # fmt: skip


#: What ``auto`` chooses among (the baseline is not one of them).
AUTO_CANDIDATES = ("classical", "supervised", "purified")


def _print(method: str, r: dict[str, Any]) -> None:
    chosen = f" -> {r['chosen']}" if "chosen" in r else ""
    print(f"  {METHODS[method]:<28} mIoU {r['miou']:.3f}  parcel acc {r['parcel_accuracy']:.3f} "
          f"({r['parcels']})  val mIoU {r['val_miou']:.3f} parcels {r['val_parcel_accuracy']:.3f}  "
          f"{r['seconds']:.1f}s{chosen}  "
          f"IoU {r['iou']}", flush=True)  # fmt: skip


#: Measures averaged over splits.
MEASURES = ("miou", "parcel_accuracy", "seconds")


def summarise(splits: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    """Mean of each measure per method over a set's splits, and how many splits each
    method beats the RandomForest on both mIoU and parcel accuracy."""
    out: dict[str, Any] = {}
    for m in methods:
        runs = [r["methods"][m] for r in splits if m in r["methods"]]
        if not runs:
            continue
        mean = {k: float(np.mean([r[k] for r in runs])) for k in MEASURES}
        rf = [r["methods"].get("rf") for r in splits if m in r["methods"]]
        if m != "rf" and all(rf):
            mean["beats_rf"] = sum(
                int(r["miou"] > b["miou"] and r["parcel_accuracy"] > b["parcel_accuracy"])
                for r, b in zip(runs, rf, strict=True)
            )
        if m == "auto":
            mean["chosen"] = [r["chosen"] for r in runs]
        out[m] = mean
    return out


def _cell(x: dict[str, Any] | None, splits: int | None = None) -> str:
    if x is None:
        return "-"
    cell = f"{x['miou']:.3f} / {x['parcel_accuracy']:.3f} / {x['seconds']:.0f}s"
    if splits is not None and "beats_rf" in x:
        cell += f" ({x['beats_rf']}/{splits})"
    return cell


def markdown(results: dict[str, Any], methods: list[str]) -> str:
    """Two tables: the mean over splits per set (with, after each method, the splits
    where it beats the RandomForest on both measures), then every split."""
    head = "| set | " + " | ".join(METHODS[m] for m in methods) + " |"
    rule = "|---" * (len(methods) + 1) + "|"
    lines = ["Mean over splits (splits beating the RandomForest on both measures):", "",
             head, rule]  # fmt: skip
    for name, r in results.items():
        n = len(r["splits"])
        cells = [_cell(r["mean"].get(m), n) for m in methods]
        lines.append(f"| {name} ({n} splits) | " + " | ".join(cells) + " |")
    lines += ["", "Each split (seed):", "", head, rule]
    for name, r in results.items():
        for split in r["splits"]:
            cells = [_cell(split["methods"].get(m)) for m in methods]
            lines.append(f"| {name} #{split['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merge_runs(paths: list[Path]) -> dict[str, Any]:
    """Results of several ``--out`` files as one: per set and split (seed), the methods of
    every file (later files win); ``auto`` chosen again among every candidate."""
    results: dict[str, Any] = {}
    for path in paths:
        for name, r in json.loads(path.read_text(encoding="utf-8"))["results"].items():
            splits = results.setdefault(name, {"splits": []})["splits"]
            for split in r["splits"]:
                known = next((x for x in splits if x["seed"] == split["seed"]), None)
                if known is None:
                    splits.append(split)
                    continue
                known["methods"].update(split["methods"])
                for key in ("validation_regions", "notes", "pixels"):
                    known.setdefault(key, split.get(key))
    for r in results.values():
        for split in r["splits"]:
            if split.get("validation_regions") is not None:  # else keep the run's choice
                split["methods"]["auto"] = auto_choice(split["methods"],
                                                       split["validation_regions"])  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    """Run every set, split and method, print the tables, write JSON."""
    args = parse_args(argv)
    if not args.data.is_dir():
        print(f"shared data not found at {args.data}; pass --data.", file=sys.stderr)
        return 2
    if args.splits < 1:
        print("--splits must be at least 1.", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    results: dict[str, Any] = merge_runs(args.merge) if args.merge else {}
    skipped: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        for split in range(0 if args.merge else args.splits):
            split_args = argparse.Namespace(**{**vars(args), "seed": args.seed + split})
            work = (args.workdir or Path(tmp)) / f"split-{split_args.seed}"
            print(f"\n=== split {split + 1}/{args.splits} (seed {split_args.seed})", flush=True)
            for bench in load_sets(split_args):
                if isinstance(bench, SplitSkipped):
                    print(f"\nskipped split {split_args.seed}: {bench}", flush=True)
                    skipped.append({"seed": split_args.seed, "reason": str(bench)})
                    continue
                out = run_set(bench, split_args, work)
                out["seed"] = split_args.seed
                results.setdefault(bench.name, {"splits": []})["splits"].append(out)
    methods = args.methods
    if args.merge:  # every method of the merged runs, in the table's order
        found = {m for r in results.values() for x in r["splits"] for m in x["methods"]}
        methods = [m for m in METHODS if m in found]
    for r in results.values():
        r["mean"] = summarise(r["splits"], methods)
    elapsed = time.monotonic() - started
    print("\nmIoU / parcel accuracy / seconds on the test labels:")
    print(markdown(results, methods))
    for skip in skipped:
        print(f"skipped, seed {skip['seed']}: {skip['reason']}")
    print(f"total {elapsed / 60:.1f} min on {platform.processor() or platform.machine()}")
    if args.out:
        options = json.loads(json.dumps(vars(args), default=str))  # paths as text
        summary = {"options": options, "results": results, "skipped": skipped,
                   "seconds": round(elapsed, 1)}  # fmt: skip
        write_text_atomic(args.out, json.dumps(summary, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
