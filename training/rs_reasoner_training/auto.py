"""``model="auto"``: train several candidates, keep the one that scores best on the
validation parcels.

Candidates (:data:`CANDIDATES`, default :data:`DEFAULT_CANDIDATES`):

* ``classical`` - LightGBM over per-pixel features (:mod:`rs_reasoner_training.classical`);
  seconds on a CPU;
* ``random-forest`` - a random forest on the bands (:mod:`rs_reasoner_training.forest`):
  the analyst's usual baseline, measured in the same run and served where it scores best
  when named (not a default candidate: on the benchmark it never beat the classical
  learner, and its deep trees take longer than the classical learner to predict);
* ``unet`` - the U-Net, supervised only, on every band;
* ``unet-ts`` - the U-Net, teacher-student on the unlabelled tiles too;
* ``unet-ts-purified`` - teacher-student whose pseudo-labels are purified by an
  independent view: the vision-language verifier when its weights are here, else the
  fitted classical learner (co-training: trees over hand-made features err differently
  from a network).

Each is scored on the same validation tiles with the same rule (mIoU over the classes
present in the truth or the prediction, :func:`rs_reasoner_training.metrics.mean_iou`).
**Few validation parcels.** A network's score is that of its best epoch on these very
labels, picked among many, while the classical learner is scored once; with a handful of
validation parcels per class the difference is noise (on the benchmark's Slovenia stack,
8 validation parcels ranked a U-Net that scored 0.16 test mIoU above a classical learner
that scored 0.30). So unless every class has :data:`MIN_VAL_REGIONS` validation regions
(connected areas of one class, :func:`rs_reasoner_training.metrics.region_counts`), a
network is served only where the classical learner is not available (:func:`choose`).
The tree candidates (:data:`TREE_CANDIDATES`) are each fitted once, so their scores compare
as they are. The chosen one is copied into the output folder as the model to serve
(``best.pt``, or ``classical.json`` for a tree candidate) and :data:`AUTO_FILE` records
the comparison.

**Time budget.** The tree candidates run first, then the network candidates share what
is left equally (a candidate that finishes early leaves its rest to the next). Without a
budget every candidate runs its full schedule. Candidates keep their own folders under
``candidates/``, so running the same command again resumes each network.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rs_reasoner.atomic import write_atomic, write_text_atomic
from rs_reasoner.errors import InvalidRequestError, JobCancelled
from rs_reasoner.models.classical import FILE_NAME as CLASSICAL_FILE
from rs_reasoner.models.classical import ClassicalModel
from rs_reasoner.models.pixel_features import FeatureSpec
from rs_reasoner.raster.band_stats import BandStats
from rs_reasoner.trained_models import AUTO_FILE, BEST, CANDIDATES_DIR
from rs_reasoner_training.classical import (
    ClassicalConfig,
    LabelledImage,
    fit_classical_to_serve,
)
from rs_reasoner_training.data.dataset import IGNORE_INDEX, TileDataset, TrainingData
from rs_reasoner_training.forest import ForestConfig, fit_forest_to_serve
from rs_reasoner_training.loop import ProgressFn, TrainResult
from rs_reasoner_training.metrics import (
    confusion_matrix,
    iou_per_class,
    mean_iou,
    region_counts,
)

CANDIDATES = ("classical", "random-forest", "unet", "unet-ts", "unet-ts-purified")
DEFAULT_CANDIDATES = ("classical", "unet", "unet-ts-purified")

#: Candidates fitted once in seconds (served as ``classical.json``); the others are networks.
TREE_CANDIDATES = ("classical", "random-forest")


def default_candidates(
    semi_supervised: bool = True, verifier: bool | str = True
) -> tuple[str, ...]:
    """The candidates ``auto`` trains when none are named, as the run's switches allow:
    ``--no-semi-supervised`` drops teacher-student, ``--no-verifier`` its purification."""
    if not semi_supervised:
        return tuple(c for c in DEFAULT_CANDIDATES if not c.startswith("unet-ts"))
    if verifier is False or verifier == "none":
        return tuple("unet-ts" if c == "unet-ts-purified" else c for c in DEFAULT_CANDIDATES)
    return DEFAULT_CANDIDATES

#: Validation regions each class needs before validation scores may prefer a network
#: over the classical learner (see the module docstring).
MIN_VAL_REGIONS = 3

DESCRIPTIONS = {
    "classical": "classical learner (LightGBM on bands, indices, local statistics)",
    "random-forest": "random forest on the bands (the usual baseline)",
    "unet": "U-Net, supervised",
    "unet-ts": "U-Net, teacher-student",
    "unet-ts-purified": "U-Net, teacher-student + purification",
}


@dataclass
class Candidate:
    """One candidate's outcome.

    Attributes:
        name: Candidate name (:data:`CANDIDATES`).
        description: What it is (the verifier too, for purified runs).
        val_miou: Validation mIoU (NaN without validation tiles).
        iou: Per-class validation IoU (None where undefined).
        seconds: Wall time it took.
        artefact: File to serve (``best.pt`` or ``classical.json``), None if none.
        stopped: How it ended (``completed``, ``time_budget``, ``failed``).
        error: Why it failed, if it did.
    """

    name: str
    description: str
    val_miou: float = math.nan
    iou: dict[str, float | None] = field(default_factory=dict)
    seconds: float = 0.0
    artefact: str | None = None
    stopped: str = "completed"
    error: str | None = None


class TileImages(Sequence[LabelledImage]):
    """The raw bands and labels of a tile dataset, read on demand (memory: one tile)."""

    def __init__(self, dataset: TileDataset | None) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return 0 if self.dataset is None else len(self.dataset)

    def __getitem__(self, index: int) -> LabelledImage:  # type: ignore[override]
        assert self.dataset is not None
        ref = self.dataset.refs[index]
        source = self.dataset.source
        if hasattr(source, "read_weighted"):  # weak labels: confidence as sample weight
            raw, valid, labels, weight = source.read_weighted(ref, self.dataset.role)
            return LabelledImage(raw, valid, labels, weight=weight)
        raw, valid, labels = source.read_raw(ref, self.dataset.role)
        return LabelledImage(raw, valid, labels)


class ClassicalVerifier:
    """The classical learner as the purification verifier (co-training).

    The teacher's weak view arrives as normalised bands (NaN set to 0); they are mapped
    back to raw values with the model's statistics (exact except where clipped).
    """

    def __init__(self, model: ClassicalModel) -> None:
        self.model = model
        stats = model.stats
        self._low = np.asarray(stats.low, np.float32)[:, None, None]
        self._span = (np.asarray(stats.high, np.float32) - np.asarray(stats.low))[:, None, None]

    @torch.no_grad()
    def probs(self, images: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
        """Class probabilities (B, C, H, W) in ``class_names`` order."""
        order = [self.model.class_names.index(c) for c in class_names]
        out = []
        for image in images.detach().float().cpu().numpy():
            raw = image * self._span + self._low
            valid = np.ones(image.shape[1:], bool)
            out.append(self.model.predict_proba(raw.astype(np.float32), valid)[order])
        return torch.from_numpy(np.stack(out)).to(images.device)


def check_candidates(names: Sequence[str]) -> tuple[str, ...]:
    """Refuse unknown candidate names (one clear error)."""
    bad = [n for n in names if n not in CANDIDATES]
    if bad or not names:
        raise InvalidRequestError(
            f"Unknown auto candidate(s): {', '.join(bad) or '(none given)'}.",
            f"Choose among: {', '.join(CANDIDATES)}.",
        )
    return tuple(dict.fromkeys(names))


def classical_scores(model: ClassicalModel, val: TileDataset | None) -> tuple[float, dict]:
    """Validation mIoU and per-class IoU of the classical learner (the networks' rule)."""
    k = len(model.class_names)
    cm = torch.zeros(k, k, dtype=torch.int64)
    for image in TileImages(val):
        probs = model.predict_proba(image.raw, image.valid)
        pred = torch.from_numpy(probs.argmax(axis=0))
        cm += confusion_matrix(pred, torch.from_numpy(image.labels.astype(np.int64)), k)
    iou = iou_per_class(cm).tolist()
    per_class = {n: (None if math.isnan(v) else v) for n, v in zip(model.class_names, iou,
                                                                     strict=True)}  # fmt: skip
    return mean_iou(cm), per_class


def fit_classical_candidate(
    data: TrainingData, folder: Path, config: ClassicalConfig | None = None
) -> tuple[ClassicalModel, Candidate]:
    """Fit the classical learner on the training tiles (early stopping and the prior
    shift on the validation tiles), score it on the validation tiles, save the model to
    serve in ``folder`` (refitted on every label when validation could not steer it:
    :func:`~rs_reasoner_training.classical.fit_classical_to_serve`)."""
    started = time.monotonic()
    stats = BandStats.from_dict(data.summary["band_stats"])
    roles = data.summary.get("band_roles") or {}
    spec = FeatureSpec.for_bands(stats.count, roles)
    val = TileImages(data.val)
    model, scored = fit_classical_to_serve(TileImages(data.labelled), data.class_names, stats,
                                           spec, config, val=val)  # fmt: skip
    miou, iou = classical_scores(scored, data.val)
    model.info["val_miou"] = miou
    path = model.save(folder)
    cand = Candidate("classical", DESCRIPTIONS["classical"], miou, iou,
                     time.monotonic() - started, str(path))  # fmt: skip
    return model, cand


def fit_forest_candidate(
    data: TrainingData, folder: Path, config: ForestConfig | None = None
) -> Candidate:
    """Fit the random forest on the training tiles, score it on the validation tiles,
    save the model to serve (refitted on every label) in ``folder``."""
    started = time.monotonic()
    stats = BandStats.from_dict(data.summary["band_stats"])
    model, scored = fit_forest_to_serve(TileImages(data.labelled), data.class_names, stats,
                                        config, val=TileImages(data.val))  # fmt: skip
    miou, iou = classical_scores(scored, data.val)
    model.info["val_miou"] = miou
    path = model.save(folder)
    return Candidate("random-forest", DESCRIPTIONS["random-forest"], miou, iou,
                     time.monotonic() - started, str(path))  # fmt: skip


def validation_regions(data: TrainingData) -> dict[str, int]:
    """Connected validation regions of each class, summed over the validation tiles."""
    k = len(data.class_names)
    counts = np.zeros(k, np.int64)
    for image in TileImages(data.val):
        labels = np.where(image.valid, image.labels, IGNORE_INDEX)
        counts += region_counts(labels, k)
    return {n: int(c) for n, c in zip(data.class_names, counts, strict=True)}


def choose(scores: Mapping[str, float], regions: Mapping[str, int]) -> tuple[str, str]:
    """The candidate to serve, and why.

    Args:
        scores: Validation mIoU of each usable candidate (NaN: not scored).
        regions: Validation regions of each class (:func:`validation_regions`).

    Returns:
        (candidate name, reason): the best score, except that the classical learner is
        kept when a network (not one of :data:`TREE_CANDIDATES`) scores best but some
        class has fewer than :data:`MIN_VAL_REGIONS` validation regions.
    """
    best = max(scores, key=lambda n: -math.inf if math.isnan(scores[n]) else scores[n])
    short = [n for n, c in regions.items() if c < MIN_VAL_REGIONS]
    if best not in TREE_CANDIDATES and "classical" in scores and short:
        return "classical", (
            f"classical learner kept: validation holds fewer than {MIN_VAL_REGIONS} regions "
            f"of {', '.join(short)}, too few for {best}'s better score to count"
        )
    return best, "best validation mIoU"


def comparison_table(candidates: Sequence[Candidate], chosen: str | None) -> list[str]:
    """Text lines: one per candidate, validation mIoU, per-class IoU, time, the choice."""
    lines = [f"{'candidate':<18} {'val mIoU':>8} {'time':>7}  "
             "per-class IoU in class order ('-': no validation pixels of the class)"]
    for c in candidates:
        if c.error:
            score = c.stopped if c.stopped == "skipped" else "failed"
        else:
            score = "-" if math.isnan(c.val_miou) else f"{c.val_miou:.3f}"
        per_class = ", ".join(
            f"{n} {'-' if v is None else f'{v:.2f}'}" for n, v in c.iou.items()
        )
        mark = "  <- chosen" if c.name == chosen else ""
        tail = c.error if c.error else per_class
        lines.append(f"{c.name:<18} {score:>8} {c.seconds:>6.0f}s  {tail}{mark}")
    return lines


def train_auto(
    data: TrainingData,
    output_dir: str | Path,
    *,
    train_network: Callable[..., TrainResult],
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    time_budget_s: float | None = None,
    classical: ClassicalConfig | None = None,
    verifier: Any = "auto",
    device: str = "cpu",
    callback: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    **network_options: Any,
) -> TrainResult:
    """Train the candidates, keep the best on validation (see the module docstring).

    Args:
        data: Training data of normalised bands (``summary["band_stats"]``).
        output_dir: The model's folder; candidates train under ``candidates/``.
        train_network: ``train_model``-like callable training one network candidate
            (``train_network(data, folder, semi_supervised=..., verifier=..., ...)``).
        candidates: Names from :data:`CANDIDATES`.
        time_budget_s: Total budget (None: every candidate runs its schedule).
        classical: Settings of the classical learner.
        verifier: Verifier of ``unet-ts-purified`` when vision-language weights are here
            (``"auto"``); otherwise the classical learner is used.
        device: Torch device of the networks.
        callback: ``callback(stage, fraction, message)``.
        cancel: Stop event.
        **network_options: Other options of ``train_network`` (epochs, lr, batch...).

    Returns:
        The chosen candidate's result; ``extra`` has ``model`` (description), ``chosen``,
        ``comparison`` (list of dicts) and ``comparison_table`` (text lines);
        ``best_path`` is the served file in ``output_dir``.

    Raises:
        InvalidRequestError: Unknown candidates, or data without band statistics.
        JobCancelled: ``cancel`` was set.
        RsReasonerError: Every candidate failed (the first error).
    """
    names = check_candidates(candidates)
    if "band_stats" not in data.summary:
        raise InvalidRequestError(
            "Automatic model choice needs training data of normalised bands.",
            "Prepare the data with all_bands=True (what 'rs-reasoner train' does).",
        )
    out = Path(output_dir)
    report = callback or (lambda stage, fraction, message: None)
    started = time.monotonic()
    results: list[Candidate] = []
    classical_model: ClassicalModel | None = None
    network_results: dict[str, TrainResult] = {}
    first_error: BaseException | None = None
    for i, name in enumerate(names):
        if cancel is not None and cancel.is_set():
            raise JobCancelled()
        share = (i / len(names), 1 / len(names))
        report("training", share[0], f"candidate {i + 1}/{len(names)}: {name}")
        folder = out / CANDIDATES_DIR / name
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        try:
            if name == "classical":
                classical_model, cand = fit_classical_candidate(data, folder, classical)
                results.append(cand)
                continue
            if name == "random-forest":
                results.append(fit_forest_candidate(data, folder, _forest_config(classical)))
                continue
            if name != "unet" and not (data.unlabelled is not None and len(data.unlabelled)):
                # Teacher-student without unlabelled tiles is the supervised run again.
                results.append(Candidate(name, DESCRIPTIONS[name], stopped="skipped",
                                         error="skipped: no unlabelled tiles"))  # fmt: skip
                continue
            budget = None
            if time_budget_s is not None:
                left = time_budget_s - (time.monotonic() - started)
                networks_left = sum(1 for n in names[i:] if n not in TREE_CANDIDATES)
                if not (data.unlabelled is not None and len(data.unlabelled)):
                    networks_left = min(networks_left, 1)  # the others are skipped
                budget = max(1.0, left / max(networks_left, 1))
            options = dict(network_options, semi_supervised=name != "unet", verifier="none")
            description = DESCRIPTIONS[name]
            if name == "unet-ts-purified":
                options["verifier"], description = _purifier(
                    verifier, classical_model, data, out, classical, device, description
                )
            result = train_network(
                data, folder, model="unet", time_budget_s=budget, device=device,
                callback=_scaled(report, *share, name), cancel=cancel, **options,
            )  # fmt: skip
            network_results[name] = result
            last = result.history[-1] if result.history else {}
            best = next((h for h in result.history if h.get("epoch") == result.best_epoch), last)
            suffix = "_teacher" if best.get("miou_teacher") == result.best_miou else ""
            iou = best.get("iou" + suffix) or best.get("iou") or {}
            results.append(Candidate(name, description, result.best_miou, dict(iou),
                                     time.monotonic() - t0, str(result.best_path),
                                     result.stopped))  # fmt: skip
        except JobCancelled:
            raise
        except Exception as exc:  # one candidate failing must not lose the others
            first_error = first_error or exc
            results.append(Candidate(name, DESCRIPTIONS[name], seconds=time.monotonic() - t0,
                                     stopped="failed", error=str(exc)))  # fmt: skip
    usable = [c for c in results if c.error is None and c.artefact]
    if not usable:
        assert first_error is not None
        raise first_error
    regions = validation_regions(data)
    name, reason = choose({c.name: c.val_miou for c in usable}, regions)
    chosen = next(c for c in usable if c.name == name)
    served = _install(chosen, out)
    table = [*comparison_table(results, chosen.name), f"chosen: {reason}"]
    record = {
        "chosen": chosen.name,
        "reason": reason,
        "validation_regions": regions,
        "checkpoint": served.name,
        "description": chosen.description,
        "comparison": [asdict(c) for c in results],
        "seconds": round(time.monotonic() - started, 1),
    }
    write_text_atomic(out / AUTO_FILE, json.dumps(_json_safe(record), indent=1))
    base = network_results.get(chosen.name)
    extra = {"model": f"auto: {chosen.description}", "chosen": chosen.name, "reason": reason,
             "comparison": record["comparison"], "comparison_table": table,
             "verifier": next((c.description for c in results
                               if c.name == "unet-ts-purified"), "none")}  # fmt: skip
    report("done", 1.0, f"chose {chosen.name}")
    return TrainResult(
        history=base.history if base else [],
        best_path=served,
        last_path=base.last_path if base else served,
        best_epoch=base.best_epoch if base else 0,
        best_miou=chosen.val_miou,
        start_epoch=base.start_epoch if base else 0,
        stopped="completed" if base is None else base.stopped,
        class_names=list(data.class_names),
        extra=extra,
    )


def _purifier(
    verifier: Any,
    classical_model: ClassicalModel | None,
    data: TrainingData,
    out: Path,
    config: ClassicalConfig | None,
    device: str,
    description: str,
) -> tuple[Any, str]:
    """The purification verifier: the vision-language one when its weights are here and
    the bands are RGB, else the classical learner (fitted now if it was not a candidate)."""
    from rs_reasoner_training.verifiers import plan_verifier

    if data.in_channels == 3 and verifier not in (None, False, "none"):
        plan = plan_verifier(verifier, device)
        if plan.verifier is not None and plan.kind != "supervised":
            return plan.verifier, f"{description} ({plan.description})"
    if classical_model is None:
        classical_model, _ = fit_classical_candidate(
            data, out / CANDIDATES_DIR / "classical-verifier", config
        )
    return ClassicalVerifier(classical_model), f"{description} (classical learner as verifier)"


def _forest_config(classical: ClassicalConfig | None) -> ForestConfig:
    """The forest's settings, with the run's threads and seed."""
    if classical is None:
        return ForestConfig()
    return ForestConfig(threads=classical.threads, seed=classical.seed)


def _scaled(report: ProgressFn, start: float, share: float, label: str) -> ProgressFn:
    def callback(stage: str, fraction: float, message: str | None) -> None:
        if stage == "done":
            stage = "training"
        report(stage, start + share * fraction, f"{label}: {message}" if message else label)

    return callback


def _install(chosen: Candidate, out: Path) -> Path:
    """Copy the winner's file into the model folder (atomically) and remove the other
    kind, so the folder serves exactly one model."""
    source = Path(str(chosen.artefact))
    tree = chosen.name in TREE_CANDIDATES
    target = out / (CLASSICAL_FILE if tree else BEST)
    with source.open("rb") as f:
        write_atomic(target, lambda dst: shutil.copyfileobj(f, dst))
    other = out / (BEST if tree else CLASSICAL_FILE)
    other.unlink(missing_ok=True)
    return target


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


__all__ = [
    "AUTO_FILE",
    "CANDIDATES",
    "DEFAULT_CANDIDATES",
    "default_candidates",
    "Candidate",
    "ClassicalVerifier",
    "TileImages",
    "MIN_VAL_REGIONS",
    "TREE_CANDIDATES",
    "check_candidates",
    "choose",
    "comparison_table",
    "fit_classical_candidate",
    "fit_forest_candidate",
    "train_auto",
    "validation_regions",
]
