"""Teacher-student training with optional VLM pseudo-label purification (SemiEarth).

Each optimizer step:

1. a labelled batch gets weak augmentation; the student's supervised loss is
   cross-entropy (ignore 255), or the ``loss_fn`` given;
2. an unlabelled batch gets weak augmentation and goes through the EMA teacher; its
   argmax/max-probability are the pseudo-labels, purified by the verifier when one is
   given (:class:`~rs_reasoner_training.purify.VlmPurifier`), then weighted by the
   selection policy;
3. the student sees a strong view (colour jitter, grey, blur, then CutMix inside the
   batch, pseudo-labels mixed alike) and learns the pseudo-labels with per-pixel
   weighted cross-entropy, normalised by the valid pixel count;
4. ``loss = supervised + unsup_weight * unsupervised``; gradients may be accumulated over
   ``grad_accum`` micro-batches; AdamW with poly decay; then the teacher's EMA update.

After each epoch both models are scored on the held-out tiles (mIoU and per-class IoU),
``last.pt`` is written atomically (resume after a kill loses at most that epoch) and
``best.pt`` keeps the best-scoring weights. Data order and augmentation come from a
generator seeded by (seed, epoch), so a resumed run repeats what the lost run would do.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from rs_reasoner.atomic import write_text_atomic
from rs_reasoner.errors import JobCancelled
from rs_reasoner_training.augment import (
    apply_cutmix,
    cutmix_boxes,
    strong_photometric,
    weak_augment,
)
from rs_reasoner_training.checkpoint import (
    BEST,
    FORMAT,
    LAST,
    load_checkpoint,
    load_model_state,
    model_state,
    rng_state,
    save_atomic,
    set_rng_state,
)
from rs_reasoner_training.data.dataset import IGNORE_INDEX, TileDataset, TrainingData
from rs_reasoner_training.ema import ema_decay, ema_update
from rs_reasoner_training.errors import CheckpointError
from rs_reasoner_training.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from rs_reasoner_training.purify import (
    ConfidenceWeighted,
    FixedThreshold,
    LearnedThresholdPolicy,
    PseudoLabels,
    PseudoLabelSelector,
    Verifier,
    VlmPurifier,
    teacher_pseudo_labels,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float, "str | None"], None]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class SegModel(Protocol):
    """What the loop trains: an ``nn.Module`` mapping images (B, 3, H, W) in [0, 1] to
    logits (B, C, H, W), C = number of classes (channel k = class id k)."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@dataclass
class TrainConfig:
    """Training options.

    Attributes:
        output_dir: Folder for ``last.pt``, ``best.pt`` and ``history.json``.
        epochs: Epochs to train (in total, counting resumed ones).
        time_budget_s: Stop after this much training time (summed over resumes); the
            epoch in progress is cut short, scored and saved.
        steps_per_epoch: Optimizer steps per epoch; None: one pass over the larger of the
            labelled and unlabelled sets (the smaller one cycles).
        batch_size: Labelled tiles per micro-batch.
        unlabelled_batch_size: Unlabelled tiles per micro-batch (None: ``batch_size``).
        crop_size: Random square crop of training tiles (None: whole tiles).
        lr: AdamW learning rate (peak; poly decay to 0 over the planned steps).
        weight_decay: AdamW weight decay.
        lr_schedule: ``"poly"`` (power 0.9, as UniMatch/SemiEarth) or ``"constant"``.
        grad_accum: Micro-batches per optimizer step.
        semi_supervised: Use unlabelled tiles (False: supervised only).
        unsup_weight: Weight of the unsupervised loss.
        selection: Pseudo-label selection: ``"weighted"`` (loss weight = purified
            confidence), ``"threshold"`` (keep confidence >= ``selection_threshold``) or
            ``"learned"`` (:class:`~rs_reasoner_training.purify.LearnedThresholdPolicy`).
        selection_threshold: Threshold of ``"threshold"`` (0.95 in SemiEarth's code).
        tau: VLM-PP confidence threshold (pixels below are checked by the verifier).
        rectify_below: VLM-PP rectification threshold.
        min_verifier_confidence: Verifier max probability needed to count as an opinion.
        fuse_contested: Fuse confidences of disagreeing, non-rectified pixels.
        ema_max_decay: Teacher EMA decay cap.
        amp: bf16 autocast on CUDA (ignored on CPU).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        seed: Seed of data order, augmentation and exploration.
        resume: Continue from ``output_dir/last.pt`` when it exists.
        eval_batch_size: Tiles per evaluation batch.
        eval_teacher: Also score the EMA teacher (best.pt keeps the better model).
        num_workers: DataLoader worker processes.
        progress_bar: Show a tqdm bar and per-epoch lines.
    """

    output_dir: str
    epochs: int = 30
    time_budget_s: float | None = None
    steps_per_epoch: int | None = None
    batch_size: int = 8
    unlabelled_batch_size: int | None = None
    crop_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: Literal["poly", "constant"] = "poly"
    grad_accum: int = 1
    semi_supervised: bool = True
    unsup_weight: float = 1.0
    selection: Literal["weighted", "threshold", "learned"] = "weighted"
    selection_threshold: float = 0.95
    tau: float = 0.7
    rectify_below: float = 0.3
    min_verifier_confidence: float = 0.1
    fuse_contested: bool = True
    ema_max_decay: float = 0.996
    amp: bool = True
    device: str = "auto"
    seed: int = 0
    resume: bool = True
    eval_batch_size: int = 8
    eval_teacher: bool = True
    num_workers: int = 0
    progress_bar: bool = True


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        history: One metrics dict per epoch (all epochs, resumed ones included).
        best_path: ``best.pt`` (weights to serve).
        last_path: ``last.pt`` (resume state).
        best_epoch: Epoch (0-based) of the best score (-1 if none).
        best_miou: Its held-out mIoU (NaN without validation).
        start_epoch: First epoch trained by this call (> 0 after a resume).
        stopped: ``"completed"`` or ``"time_budget"``.
        class_names: Class of each output channel.
    """

    history: list[dict[str, Any]]
    best_path: Path
    last_path: Path
    best_epoch: int
    best_miou: float
    start_epoch: int
    stopped: str
    class_names: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


def supervised_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled pixels (0, not NaN, when a batch has none)."""
    if not bool((labels != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


def unsupervised_ce(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Per-pixel weighted cross-entropy, summed and divided by the valid pixel count."""
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    w = weights * valid.to(weights.dtype)
    return (ce * w).sum() / valid.sum().clamp(min=1)


def make_selector(config: TrainConfig, num_classes: int) -> PseudoLabelSelector:
    """The selection policy named in ``config.selection``."""
    if config.selection == "weighted":
        return ConfidenceWeighted()
    if config.selection == "threshold":
        return FixedThreshold(config.selection_threshold)
    if config.selection == "learned":
        return LearnedThresholdPolicy(num_classes, seed=config.seed)
    raise ValueError(f"unknown selection {config.selection!r}")


def _parameter_groups(model: nn.Module, lr: float) -> list[dict[str, Any]]:
    """Optimizer groups: the model's own (``parameter_groups(lr)``, e.g. RS-ZeroSeg's
    lower backbone rate, kept through the schedule by ``lr_scale``), else one group of
    the trainable parameters."""
    if hasattr(model, "parameter_groups"):
        return model.parameter_groups(lr)
    return [{"params": [p for p in model.parameters() if p.requires_grad]}]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _batches(
    dataset: TileDataset, batch_size: int, generator: torch.Generator, workers: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless shuffled batches (a new permutation from ``generator`` each pass)."""
    while True:
        order = torch.randperm(len(dataset), generator=generator).tolist()
        loader = DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=workers)
        yield from loader


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: TileDataset,
    num_classes: int,
    device: torch.device,
    batch_size: int = 8,
    amp: bool = True,
    workers: int = 0,
) -> torch.Tensor:
    """Confusion matrix of a model on labelled tiles (whole tiles, no augmentation).

    Returns:
        (C, C) int64, rows true class, columns predicted.
    """
    return evaluate_all([model], dataset, num_classes, device, batch_size, amp, workers)[0]


def evaluate_all(
    models: Sequence[nn.Module],
    dataset: TileDataset,
    num_classes: int,
    device: torch.device,
    batch_size: int = 8,
    amp: bool = True,
    workers: int = 0,
) -> list[torch.Tensor]:
    """:func:`evaluate` for several models (student and teacher) in one pass over the tiles.

    Returns:
        One (C, C) int64 confusion matrix per model, in order.
    """
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    cms = [torch.zeros(num_classes, num_classes, dtype=torch.int64) for _ in models]
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    for batch in loader:
        images = batch["image"].to(device)
        for m, cm in zip(models, cms, strict=True):
            with _autocast(device, amp):
                logits = m(images)
            cm += confusion_matrix(logits.argmax(1).cpu(), batch["label"], num_classes)
    for m, mode in zip(models, modes, strict=True):
        m.train(mode)
    return cms


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _score(cm: torch.Tensor, class_names: list[str]) -> dict[str, Any]:
    iou = iou_per_class(cm).tolist()
    return {
        "miou": _finite(mean_iou(cm)),
        "pixel_accuracy": _finite(pixel_accuracy(cm)),
        "iou": {n: _finite(v) for n, v in zip(class_names, iou, strict=True)},
    }


class _Stats:
    """Running sums of an epoch's losses and pseudo-label statistics."""

    def __init__(self) -> None:
        self.n = 0
        self.loss = self.sup = self.unsup = 0.0
        self.valid = self.purified = self.rectified = self.selected = 0.0

    def add_losses(self, loss: float, sup: float, unsup: float) -> None:
        self.n += 1
        self.loss += loss
        self.sup += sup
        self.unsup += unsup

    def add_pseudo(self, pl: PseudoLabels, weights: torch.Tensor, valid: torch.Tensor) -> None:
        self.valid += float(valid.sum())
        self.purified += float((pl.purified & valid).sum())
        self.rectified += float((pl.rectified & valid).sum())
        self.selected += float((weights * valid).sum())

    def summary(self) -> dict[str, Any]:
        n, v = max(self.n, 1), self.valid
        return {
            "loss": self.loss / n,
            "sup_loss": self.sup / n,
            "unsup_loss": self.unsup / n,
            "purified_fraction": self.purified / v if v else 0.0,
            "rectified_fraction": self.rectified / v if v else 0.0,
            "selected_fraction": self.selected / v if v else 0.0,
        }


def train(
    model: nn.Module,
    data: TrainingData,
    config: TrainConfig,
    *,
    loss_fn: LossFn | None = None,
    verifier: Verifier | None = None,
    selector: PseudoLabelSelector | None = None,
    model_spec: dict[str, Any] | None = None,
    callback: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> TrainResult:
    """Train ``model`` (student) with an EMA teacher on ``data``; resumable.

    Args:
        model: The student (:class:`SegModel`), initialised; trained in place.
        data: Labelled / unlabelled / held-out tiles and class names.
        config: Options (see :class:`TrainConfig`).
        loss_fn: Supervised loss ``(logits, labels) -> scalar``; default cross-entropy
            ignoring 255.
        verifier: VLM-PP verifier; None for plain teacher-student.
        selector: Pseudo-label selection; default from ``config.selection``.
        model_spec: How to rebuild the model (stored in checkpoints for serving), e.g.
            ``UNet.spec()``; None when the model has its own loader.
        callback: ``callback(stage, fraction, message)`` progress reports.
        cancel: When set, training stops at the next step and raises ``JobCancelled``
            (the last epoch checkpoint stays usable for resuming).

    Returns:
        History, checkpoint paths, best epoch and score.

    Raises:
        JobCancelled: ``cancel`` was set.
        CheckpointError: ``last.pt`` exists but belongs to another setup.
    """
    report = callback or (lambda stage, fraction, message: None)
    started = time.monotonic()
    device = resolve_device(config.device)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    class_names = list(data.class_names)
    k = len(class_names)
    loss_fn = loss_fn or supervised_ce
    semi = config.semi_supervised and data.unlabelled is not None and len(data.unlabelled) > 0
    bs = config.batch_size
    ubs = config.unlabelled_batch_size or bs
    accum = max(1, config.grad_accum)
    if config.steps_per_epoch:
        steps = config.steps_per_epoch
    else:
        steps = math.ceil(len(data.labelled) / (bs * accum))
        if semi:
            steps = max(steps, math.ceil(len(data.unlabelled) / (ubs * accum)))
    total_steps = steps * config.epochs

    model.to(device)
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        _parameter_groups(model, config.lr), lr=config.lr, weight_decay=config.weight_decay
    )
    selector = selector or make_selector(config, k)
    purifier = (
        VlmPurifier(
            verifier,
            class_names,
            tau=config.tau,
            rectify_below=config.rectify_below,
            min_verifier_confidence=config.min_verifier_confidence,
            fuse_contested=config.fuse_contested,
        )
        if verifier is not None
        else None
    )

    history: list[dict[str, Any]] = []
    start_epoch, step, best_score, best_epoch, spent = 0, 0, -math.inf, -1, 0.0
    last_path, best_path = out / LAST, out / BEST
    if config.resume and last_path.exists():
        report("resuming", 0.0, str(last_path))
        state = load_checkpoint(last_path, map_location="cpu")
        if state.get("class_names") != class_names or state.get("model_spec") != model_spec:
            raise CheckpointError(
                f"{last_path} is from a run with other classes or another model "
                f"({state.get('class_names')}).",
                "Use a new output folder, or turn resume off to start over.",
            )
        if _fingerprint(state.get("data") or {}) != _fingerprint(data.summary):
            raise CheckpointError(
                f"{last_path} was trained on other data (split, budget or tiles differ).",
                "Resume with the same inputs and options, or use a new output folder.",
            )
        load_model_state(model, state["model"])
        load_model_state(teacher, state["teacher"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("selector") is not None and hasattr(selector, "load_state_dict"):
            selector.load_state_dict(state["selector"])
        set_rng_state(state["rng"])
        start_epoch = int(state["epoch"]) + 1
        step, spent = int(state["step"]), float(state["train_seconds"])
        best_score, best_epoch = float(state["best_score"]), int(state["best_epoch"])
        history = list(state["history"])
        log.info("resumed from %s at epoch %d", last_path, start_epoch)
    else:
        torch.manual_seed(config.seed)

    budget = config.time_budget_s
    stopped = "completed"
    run_started = time.monotonic()

    def elapsed() -> float:
        return spent + time.monotonic() - run_started

    for epoch in range(start_epoch, config.epochs):
        if budget is not None and elapsed() >= budget:
            stopped = "time_budget"
            break
        epoch_start = time.monotonic()
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        lab = _batches(data.labelled, bs, g, config.num_workers)
        unl = _batches(data.unlabelled, ubs, g, config.num_workers) if semi else None
        if hasattr(selector, "begin_epoch"):
            selector.begin_epoch(epoch)
        stats = _Stats()
        model.train()
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not config.progress_bar,
            leave=False,
        )
        cut_short, lr = False, config.lr
        try:
            for s in range(steps):
                if cancel is not None and cancel.is_set():
                    raise JobCancelled()
                if budget is not None and elapsed() >= budget:
                    cut_short = True
                    break
                lr = config.lr
                if config.lr_schedule == "poly":
                    lr *= (1 - min(step, total_steps - 1) / total_steps) ** 0.9
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                optimizer.zero_grad(set_to_none=True)
                for _ in range(accum):
                    losses = _micro_step(
                        model,
                        teacher,
                        next(lab),
                        next(unl) if unl else None,
                        g,
                        config,
                        device,
                        loss_fn,
                        purifier,
                        selector,
                        stats,
                    )
                    (losses[0] / accum).backward()
                    stats.add_losses(*(float(x.detach()) for x in losses))
                optimizer.step()
                ema_update(teacher, model, ema_decay(step, config.ema_max_decay))
                step += 1
                bar.update(1)
                fraction = (epoch + (s + 1) / steps) / config.epochs
                report("training", fraction, f"epoch {epoch + 1}/{config.epochs}")
        finally:
            bar.close()

        if cut_short and stats.n == 0:
            stopped = "time_budget"  # nothing trained since the last checkpoint
            break
        report("evaluating", (epoch + 1) / config.epochs, f"epoch {epoch + 1}")
        metrics: dict[str, Any] = {"epoch": epoch, **stats.summary(), "lr": lr, "steps": stats.n}
        if hasattr(selector, "thresholds"):
            metrics["thresholds"] = dict(
                zip(class_names, selector.thresholds.tolist(), strict=True)
            )
        score, weights_from = math.nan, "student"
        if data.val is not None and len(data.val):
            judged = [model, teacher] if config.eval_teacher else [model]
            cm, *teacher_cm = evaluate_all(
                judged, data.val, k, device, config.eval_batch_size, config.amp,
                config.num_workers,
            )  # fmt: skip
            metrics.update(_score(cm, class_names))
            score = metrics["miou"] if metrics["miou"] is not None else math.nan
            if hasattr(selector, "update"):
                selector.update(iou_per_class(cm).tolist())
            if teacher_cm:
                t = _score(teacher_cm[0], class_names)
                metrics.update({f"{key}_teacher": v for key, v in t.items()})
                if t["miou"] is not None and not (t["miou"] <= score):
                    score, weights_from = t["miou"], "teacher"
        metrics["seconds"] = time.monotonic() - epoch_start
        history.append(metrics)
        # Without validation every epoch is "best" (the latest weights are served).
        is_best = not math.isfinite(score) or score > best_score or best_epoch < 0
        if is_best:
            best_score = score if math.isfinite(score) else -math.inf
            best_epoch = epoch
        report("saving", (epoch + 1) / config.epochs, f"epoch {epoch + 1}")
        base = {
            "format": FORMAT,
            "class_names": class_names,
            "model_spec": model_spec,
            "config": asdict(config),
            "data": data.summary,
        }
        if is_best:
            chosen = teacher if weights_from == "teacher" else model
            save_atomic(
                {
                    **base,
                    "kind": "best",
                    "epoch": epoch,
                    "model": model_state(chosen),
                    "weights_from": weights_from,
                    "metrics": metrics,
                },
                best_path,
            )
        # An epoch cut short by the time budget is not finished: a resume redoes it whole.
        finished, finished_history = (epoch - 1, history[:-1]) if cut_short else (epoch, history)
        save_atomic(
            {
                **base,
                "kind": "last",
                "epoch": finished,
                "step": step,
                "model": model_state(model),
                "teacher": model_state(teacher),
                "optimizer": optimizer.state_dict(),
                "selector": selector.state_dict() if hasattr(selector, "state_dict") else None,
                "rng": rng_state(),
                "history": finished_history,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "train_seconds": elapsed(),
            },
            last_path,
        )
        write_text_atomic(
            out / "history.json",
            json.dumps({"class_names": class_names, "history": history}, indent=1),
        )
        line = _epoch_line(metrics, config.epochs)
        log.info(line)
        if config.progress_bar:
            tqdm.write(line)
        if cut_short:
            stopped = "time_budget"
            break

    report("done", 1.0, f"best epoch {best_epoch + 1}")
    return TrainResult(
        history=history,
        best_path=best_path,
        last_path=last_path,
        best_epoch=best_epoch,
        best_miou=best_score if math.isfinite(best_score) else math.nan,
        start_epoch=start_epoch,
        stopped=stopped,
        class_names=class_names,
        extra={"seconds": time.monotonic() - started, "device": str(device)},
    )


def _micro_step(
    model: nn.Module,
    teacher: nn.Module,
    lab: dict[str, torch.Tensor],
    unl: dict[str, torch.Tensor] | None,
    g: torch.Generator,
    config: TrainConfig,
    device: torch.device,
    loss_fn: LossFn,
    purifier: VlmPurifier | None,
    selector: PseudoLabelSelector,
    stats: _Stats,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Losses of one micro-batch: (total, supervised, unsupervised)."""
    x, y, _ = weak_augment(lab["image"], lab["label"], lab["valid"], g, config.crop_size)
    x, y = x.to(device), y.to(device)
    if unl is None:
        with _autocast(device, config.amp):
            logits = model(x)
        sup = loss_fn(logits, y)
        return sup, sup.detach(), torch.zeros(())
    xu, _, vu = weak_augment(unl["image"], unl["label"], unl["valid"], g, config.crop_size)
    xu, vu = xu.to(device), vu.to(device)
    with torch.no_grad(), _autocast(device, config.amp):
        probs = teacher(xu).float().softmax(dim=1)
    pl = purifier(xu, probs) if purifier is not None else teacher_pseudo_labels(probs)
    weights = selector.weights(pl.labels, pl.confidence)
    stats.add_pseudo(pl, weights, vu)
    # Strong view: photometric on the weak view, then CutMix inside the batch.
    xs = strong_photometric(xu, g)
    boxes = cutmix_boxes(xs.shape[0], xs.shape[-2], xs.shape[-1], g).to(device)
    xs = apply_cutmix(xs, boxes)
    labels_u = apply_cutmix(pl.labels, boxes)
    weights_u = apply_cutmix(weights, boxes)
    valid_u = apply_cutmix(vu, boxes)
    with _autocast(device, config.amp):
        if x.shape[-2:] == xs.shape[-2:]:
            logits_l, logits_u = model(torch.cat([x, xs])).split([x.shape[0], xs.shape[0]])
        else:
            logits_l, logits_u = model(x), model(xs)
    sup = loss_fn(logits_l, y)
    unsup = unsupervised_ce(logits_u, labels_u, weights_u, valid_u)
    total = sup + config.unsup_weight * unsup
    return total, sup.detach(), unsup.detach()


def _fingerprint(summary: dict[str, Any]) -> dict[str, Any]:
    """The parts of a data summary that must match to resume (counts, not paths)."""
    keys = ("source", "tile_size", "bands", "scale", "parcels", "tiles", "images")
    return {k: summary.get(k) for k in keys}


def _epoch_line(m: dict[str, Any], epochs: int) -> str:
    """One readable line of an epoch's metrics."""
    parts = [f"epoch {m['epoch'] + 1}/{epochs}", f"loss {m['loss']:.4f}"]
    if m.get("miou") is not None:
        parts.append(f"mIoU {m['miou']:.4f}")
    if m.get("miou_teacher") is not None:
        parts.append(f"teacher {m['miou_teacher']:.4f}")
    parts.append(f"purified {m['purified_fraction']:.3f} rectified {m['rectified_fraction']:.3f}")
    if m.get("iou"):
        per = ", ".join(f"{n} {v:.3f}" if v is not None else f"{n} -" for n, v in m["iou"].items())
        parts.append(f"IoU: {per}")
    return " | ".join(parts)
