"""Teacher-student training with optional VLM pseudo-label purification (SemiEarth).

Each optimizer step:

1. a labelled batch gets weak augmentation; the student's supervised loss is
   cross-entropy (ignore 255) with class weights from the label frequencies
   (``class_balance``), or the ``loss_fn`` given;
2. an unlabelled batch gets weak augmentation and goes through the EMA teacher; its
   argmax/max-probability are the pseudo-labels, purified by the verifier when one is
   given (:class:`~rs_reasoner_training.purify.VlmPurifier`), then weighted by the
   selection policy;
3. the student sees a strong view (colour jitter, grey, blur, then CutMix inside the
   batch, pseudo-labels mixed alike) and learns the pseudo-labels with per-pixel
   weighted cross-entropy, normalised by the valid pixel count;
4. ``loss = supervised + unsup_weight * unsupervised``; gradients may be accumulated over
   ``grad_accum`` micro-batches; AdamW with a linear warm-up, then poly decay over the
   planned steps or the time budget; then the teacher's EMA update.

After each epoch both models are scored on the held-out tiles (mIoU and per-class IoU),
``last.pt`` is written atomically (resume after a kill loses at most that epoch) and
``best.pt`` keeps the best-scoring weights. Data order and augmentation come from a
generator seeded by (seed, epoch), so a resumed run repeats what the lost run would do.

The run is a :class:`TeacherStudentTask` whose methods are its steps, in the order
:meth:`~TeacherStudentTask.fit` calls them: :meth:`~TeacherStudentTask.resume`, then per
epoch :meth:`~TeacherStudentTask.train_epoch` (optimizer steps of
:meth:`~TeacherStudentTask.training_step` micro-batches),
:meth:`~TeacherStudentTask.evaluate`, :meth:`~TeacherStudentTask.record` and
:meth:`~TeacherStudentTask.save`. A variant overrides the step it changes. Registering
the trained model for serving is the caller's step (:mod:`rs_reasoner_training.api`).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
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
from rs_reasoner_training.config import TrainConfig
from rs_reasoner_training.data.dataset import TileDataset, TrainingData
from rs_reasoner_training.devices import autocast, resolve_device
from rs_reasoner_training.ema import ema_decay, ema_update
from rs_reasoner_training.errors import CheckpointError
from rs_reasoner_training.evaluation import evaluate_all, scores
from rs_reasoner_training.losses import (
    LossFn,
    class_frequency_weights,
    supervised_ce,
    unsupervised_ce,
)
from rs_reasoner_training.metrics import iou_per_class
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
Batch = dict[str, torch.Tensor]

__all__ = [
    "LossFn",
    "ProgressFn",
    "SegModel",
    "TeacherStudentTask",
    "TrainConfig",
    "TrainResult",
    "make_selector",
    "train",
]


class SegModel(Protocol):
    """What the loop trains: an ``nn.Module`` mapping images (B, 3, H, W) in [0, 1] to
    logits (B, C, H, W), C = number of classes (channel k = class id k)."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


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
    task = TeacherStudentTask(
        model,
        data,
        config,
        loss_fn=loss_fn,
        verifier=verifier,
        selector=selector,
        model_spec=model_spec,
        callback=callback,
        cancel=cancel,
    )
    return task.fit()


def make_selector(config: TrainConfig, num_classes: int) -> PseudoLabelSelector:
    """The selection policy named in ``config.selection``."""
    if config.selection == "weighted":
        return ConfidenceWeighted()
    if config.selection == "threshold":
        return FixedThreshold(config.selection_threshold)
    if config.selection == "learned":
        return LearnedThresholdPolicy(num_classes, seed=config.seed)
    raise ValueError(f"unknown selection {config.selection!r}")


@dataclass
class RunState:
    """Where a run stands; ``last.pt`` keeps it so a resume continues from there.

    Attributes:
        next_epoch: First epoch not yet trained.
        step: Optimizer steps taken (drives the learning-rate and EMA schedules).
        best_score: Held-out score of ``best.pt`` (-inf before the first).
        best_epoch: Its epoch (-1 before the first).
        history: Metrics of every epoch trained.
        spent: Training seconds of earlier runs (counted against the time budget).
    """

    next_epoch: int = 0
    step: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    spent: float = 0.0


@dataclass
class EpochRun:
    """What :meth:`TeacherStudentTask.train_epoch` did in one epoch.

    Attributes:
        epoch: The epoch (0-based).
        stats: Its losses and pseudo-label statistics.
        lr: Learning rate of its last step.
        cut_short: The time budget ran out before its last step.
        started: ``time.monotonic()`` at its start.
    """

    epoch: int
    stats: EpochStats
    lr: float
    started: float
    cut_short: bool = False


@dataclass
class EpochScore:
    """What :meth:`TeacherStudentTask.evaluate` found.

    Attributes:
        metrics: The epoch's line of ``history.json``.
        score: Held-out mIoU of the better model (NaN without held-out tiles).
        weights_from: ``"student"`` or ``"teacher"``: whose weights earned ``score``.
    """

    metrics: dict[str, Any]
    score: float = math.nan
    weights_from: str = "student"


class TeacherStudentTask:
    """One resumable training run: a student, its EMA teacher and their optimiser.

    The constructor sets the run up; :meth:`fit` runs it. Arguments are those of
    :func:`train`.
    """

    def __init__(
        self,
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
    ) -> None:
        self.started = time.monotonic()
        self.report: ProgressFn = callback or (lambda stage, fraction, message: None)
        self.cancel = cancel
        self.model, self.data, self.config, self.model_spec = model, data, config, model_spec
        self.device = resolve_device(config.device)
        self.out = Path(config.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.last_path, self.best_path = self.out / LAST, self.out / BEST
        self.class_names = list(data.class_names)
        self.class_weights = None
        if loss_fn is None:
            self.class_weights = class_frequency_weights(
                data.labelled, len(self.class_names), config.class_balance, seed=config.seed
            )
            loss_fn = functools.partial(supervised_ce, weight=self.class_weights)
        self.loss_fn = loss_fn
        self.semi = (
            config.semi_supervised and data.unlabelled is not None and len(data.unlabelled) > 0
        )
        self.accum = max(1, config.grad_accum)
        self.steps = self.steps_per_epoch()
        self.total_steps = self.steps * config.epochs
        model.to(self.device)
        self.teacher = self.make_teacher()
        self.optimizer = self.configure_optimizer()
        self.selector = selector or make_selector(config, len(self.class_names))
        self.purifier = self.make_purifier(verifier)
        self.state = RunState()
        self._clock_started = time.monotonic()

    # -- set-up ------------------------------------------------------------------------------

    def steps_per_epoch(self) -> int:
        """``config.steps_per_epoch``, else one pass over the larger of the labelled and
        unlabelled sets (the smaller one cycles)."""
        config, data = self.config, self.data
        if config.steps_per_epoch:
            return config.steps_per_epoch
        steps = math.ceil(len(data.labelled) / (config.batch_size * self.accum))
        if self.semi:
            unlabelled_bs = config.unlabelled_batch_size or config.batch_size
            steps = max(steps, math.ceil(len(data.unlabelled) / (unlabelled_bs * self.accum)))
        return max(steps, config.min_steps_per_epoch)

    def make_teacher(self) -> nn.Module:
        """A frozen copy of the student, in eval mode (updated by EMA, never by gradients)."""
        teacher = copy.deepcopy(self.model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def configure_optimizer(self) -> torch.optim.Optimizer:
        """AdamW over the model's own parameter groups (``parameter_groups(lr)``, e.g.
        RS-ZeroSeg's lower backbone rate, kept through the schedule by ``lr_scale``), else
        one group of the trainable parameters."""
        config = self.config
        if hasattr(self.model, "parameter_groups"):
            groups = self.model.parameter_groups(config.lr)
        else:
            groups = [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)

    def make_purifier(self, verifier: Verifier | None) -> VlmPurifier | None:
        """VLM-PP around ``verifier``; None without one (plain teacher pseudo-labels)."""
        if verifier is None:
            return None
        config = self.config
        return VlmPurifier(
            verifier,
            self.class_names,
            tau=config.tau,
            rectify_below=config.rectify_below,
            min_verifier_confidence=config.min_verifier_confidence,
            fuse_contested=config.fuse_contested,
        )

    # -- the run -----------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Resume, then train, evaluate, record and save epoch after epoch until the last
        epoch or the time budget."""
        self.resume()
        start_epoch = self.state.next_epoch
        self._clock_started = time.monotonic()
        stopped = "completed"
        for epoch in range(start_epoch, self.config.epochs):
            if self.out_of_time():
                stopped = "time_budget"
                break
            run = self.train_epoch(epoch)
            if run.cut_short and run.stats.n == 0:
                stopped = "time_budget"  # nothing trained since the last checkpoint
                break
            scored = self.evaluate(run)
            is_best = self.record(epoch, scored)
            self.save(run, scored, is_best)
            self.log_epoch(scored.metrics)
            if run.cut_short:
                stopped = "time_budget"
                break
        self.report("done", 1.0, f"best epoch {self.state.best_epoch + 1}")
        return self.result(start_epoch, stopped)

    def elapsed(self) -> float:
        """Training seconds so far, earlier runs of a resumed run included."""
        return self.state.spent + time.monotonic() - self._clock_started

    def out_of_time(self) -> bool:
        budget = self.config.time_budget_s
        return budget is not None and self.elapsed() >= budget

    # -- step 1: resume ----------------------------------------------------------------------

    def resume(self) -> None:
        """Restore weights, optimiser, selector, random state and :class:`RunState` from
        ``last.pt`` when resuming; else seed torch for a fresh run.

        Raises:
            CheckpointError: ``last.pt`` is from other classes, another model or other data.
        """
        config, last_path = self.config, self.last_path
        if not (config.resume and last_path.exists()):
            torch.manual_seed(config.seed)
            return
        self.report("resuming", 0.0, str(last_path))
        saved = load_checkpoint(last_path, map_location="cpu")
        if saved.get("class_names") != self.class_names or (
            saved.get("model_spec") != self.model_spec
        ):
            raise CheckpointError(
                f"{last_path} is from a run with other classes or another model "
                f"({saved.get('class_names')}).",
                "Use a new output folder, or turn resume off to start over.",
            )
        if _fingerprint(saved.get("data") or {}) != _fingerprint(self.data.summary):
            raise CheckpointError(
                f"{last_path} was trained on other data (split, budget or tiles differ).",
                "Resume with the same inputs and options, or use a new output folder.",
            )
        load_model_state(self.model, saved["model"])
        load_model_state(self.teacher, saved["teacher"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if saved.get("selector") is not None and hasattr(self.selector, "load_state_dict"):
            self.selector.load_state_dict(saved["selector"])
        set_rng_state(saved["rng"])
        self.state = RunState(
            next_epoch=int(saved["epoch"]) + 1,
            step=int(saved["step"]),
            best_score=float(saved["best_score"]),
            best_epoch=int(saved["best_epoch"]),
            history=list(saved["history"]),
            spent=float(saved["train_seconds"]),
        )
        log.info("resumed from %s at epoch %d", last_path, self.state.next_epoch)

    # -- step 2: train an epoch --------------------------------------------------------------

    def train_epoch(self, epoch: int) -> EpochRun:
        """The optimizer steps of one epoch; stops early when the time budget runs out.

        Raises:
            JobCancelled: ``cancel`` was set.
        """
        config = self.config
        run = EpochRun(epoch, EpochStats(), config.lr, started=time.monotonic())
        # Seeded by (seed, epoch): a resumed run draws the same batches and augmentations.
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        labelled = _batches(self.data.labelled, config.batch_size, g, config.num_workers)
        unlabelled = (
            _batches(
                self.data.unlabelled,
                config.unlabelled_batch_size or config.batch_size,
                g,
                config.num_workers,
            )
            if self.semi
            else None
        )
        if hasattr(self.selector, "begin_epoch"):
            self.selector.begin_epoch(epoch)
        self.model.train()
        bar = tqdm(
            total=self.steps,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not config.progress_bar,
            leave=False,
        )
        try:
            for s in range(self.steps):
                if self.cancel is not None and self.cancel.is_set():
                    raise JobCancelled()
                if self.out_of_time():
                    run.cut_short = True
                    break
                run.lr = self.optimizer_step(labelled, unlabelled, g, run.stats)
                bar.update(1)
                fraction = (epoch + (s + 1) / self.steps) / config.epochs
                self.report("training", fraction, f"epoch {epoch + 1}/{config.epochs}")
        finally:
            bar.close()
        return run

    def learning_rate(self, step: int) -> float:
        """The peak rate after a linear warm-up, decayed by ``config.lr_schedule``.

        The decay follows the run's progress: the larger of the share of planned steps
        taken and the share of the time budget spent, so a run that the budget ends
        early still anneals instead of stopping at its peak rate.
        """
        config = self.config
        lr = config.lr
        warmup = max(1, round(config.warmup_fraction * self.total_steps))
        if step < warmup:
            return lr * (step + 1) / warmup
        if config.lr_schedule == "poly":
            progress = min(step, self.total_steps - 1) / self.total_steps
            if config.time_budget_s:
                progress = max(progress, min(self.elapsed() / config.time_budget_s, 0.999))
            lr *= (1 - progress) ** 0.9
        return lr

    def optimizer_step(
        self,
        labelled: Iterator[Batch],
        unlabelled: Iterator[Batch] | None,
        g: torch.Generator,
        stats: EpochStats,
    ) -> float:
        """One optimizer step over ``grad_accum`` micro-batches, then the teacher's EMA
        update; returns the learning rate used."""
        lr = self.learning_rate(self.state.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.optimizer.zero_grad(set_to_none=True)
        for _ in range(self.accum):
            lab = next(labelled)  # labelled first: both draw from the same generator
            unl = next(unlabelled) if unlabelled else None
            losses = self.training_step(lab, unl, g, stats)
            (losses[0] / self.accum).backward()
            stats.add_losses(*(float(x.detach()) for x in losses))
        self.optimizer.step()
        ema_update(self.teacher, self.model, ema_decay(self.state.step, self.config.ema_max_decay))
        self.state.step += 1
        return lr

    def training_step(
        self, lab: Batch, unl: Batch | None, g: torch.Generator, stats: EpochStats
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Losses of one micro-batch: (total, supervised, unsupervised)."""
        config, device, model = self.config, self.device, self.model
        x, y, _ = weak_augment(lab["image"], lab["label"], lab["valid"], g, config.crop_size)
        x, y = x.to(device), y.to(device)
        if unl is None:
            with autocast(device, config.amp):
                logits = model(x)
            sup = self.loss_fn(logits, y)
            return sup, sup.detach(), torch.zeros(())
        xs, labels_u, weights_u, valid_u = self.strong_view(unl, g, stats)
        with autocast(device, config.amp):
            if x.shape[-2:] == xs.shape[-2:]:
                logits_l, logits_u = model(torch.cat([x, xs])).split([x.shape[0], xs.shape[0]])
            else:
                logits_l, logits_u = model(x), model(xs)
        sup = self.loss_fn(logits_l, y)
        unsup = unsupervised_ce(logits_u, labels_u, weights_u, valid_u)
        total = sup + config.unsup_weight * unsup
        return total, sup.detach(), unsup.detach()

    def strong_view(
        self, unl: Batch, g: torch.Generator, stats: EpochStats
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """An unlabelled batch as the student learns it: the teacher's pseudo-labels on a
        weak view (purified, then weighted by the selector), and a strong view of the
        same images, both mixed alike by CutMix.

        Returns:
            (strong images, pseudo-labels, their weights, valid mask).
        """
        config, device = self.config, self.device
        xu, _, vu = weak_augment(unl["image"], unl["label"], unl["valid"], g, config.crop_size)
        xu, vu = xu.to(device), vu.to(device)
        with torch.no_grad(), autocast(device, config.amp):
            probs = self.teacher(xu).float().softmax(dim=1)
        pl = self.purifier(xu, probs) if self.purifier is not None else teacher_pseudo_labels(probs)
        weights = self.selector.weights(pl.labels, pl.confidence)
        stats.add_pseudo(pl, weights, vu)
        # Strong view: photometric on the weak view, then CutMix inside the batch.
        xs = strong_photometric(xu, g)
        boxes = cutmix_boxes(xs.shape[0], xs.shape[-2], xs.shape[-1], g).to(device)
        xs = apply_cutmix(xs, boxes)
        labels_u = apply_cutmix(pl.labels, boxes)
        weights_u = apply_cutmix(weights, boxes)
        valid_u = apply_cutmix(vu, boxes)
        return xs, labels_u, weights_u, valid_u

    # -- step 3: evaluate --------------------------------------------------------------------

    def evaluate(self, run: EpochRun) -> EpochScore:
        """The epoch's metrics: its losses, then student (and teacher) scores on the
        held-out tiles; the student's per-class IoU feeds a learning selector."""
        config, epoch = self.config, run.epoch
        self.report("evaluating", (epoch + 1) / config.epochs, f"epoch {epoch + 1}")
        metrics: dict[str, Any] = {
            "epoch": epoch,
            **run.stats.summary(),
            "lr": run.lr,
            "steps": run.stats.n,
        }
        if hasattr(self.selector, "thresholds"):
            metrics["thresholds"] = dict(
                zip(self.class_names, self.selector.thresholds.tolist(), strict=True)
            )
        scored = EpochScore(metrics)
        val = self.data.val
        if val is not None and len(val):
            judged = [self.model, self.teacher] if config.eval_teacher else [self.model]
            cm, *teacher_cm = evaluate_all(
                judged, val, len(self.class_names), self.device, config.eval_batch_size,
                config.amp, config.num_workers,
            )  # fmt: skip
            metrics.update(scores(cm, self.class_names))
            scored.score = metrics["miou"] if metrics["miou"] is not None else math.nan
            if hasattr(self.selector, "update"):
                self.selector.update(iou_per_class(cm).tolist())
            if teacher_cm:
                t = scores(teacher_cm[0], self.class_names)
                metrics.update({f"{key}_teacher": v for key, v in t.items()})
                if t["miou"] is not None and not (t["miou"] <= scored.score):
                    scored.score, scored.weights_from = t["miou"], "teacher"
        metrics["seconds"] = time.monotonic() - run.started
        return scored

    # -- step 4: record ----------------------------------------------------------------------

    def record(self, epoch: int, scored: EpochScore) -> bool:
        """Add the epoch to the history; whether its weights are the best so far."""
        state, score = self.state, scored.score
        state.history.append(scored.metrics)
        # Without validation every epoch is "best" (the latest weights are served).
        is_best = not math.isfinite(score) or score > state.best_score or state.best_epoch < 0
        if is_best:
            state.best_score = score if math.isfinite(score) else -math.inf
            state.best_epoch = epoch
        return is_best

    # -- step 5: save ------------------------------------------------------------------------

    def save(self, run: EpochRun, scored: EpochScore, is_best: bool) -> None:
        """``best.pt`` when the epoch is the best, ``last.pt`` and ``history.json`` always
        (each written atomically)."""
        epoch, state = run.epoch, self.state
        self.report("saving", (epoch + 1) / self.config.epochs, f"epoch {epoch + 1}")
        base = {
            "format": FORMAT,
            "class_names": self.class_names,
            "model_spec": self.model_spec,
            "config": asdict(self.config),
            "data": self.data.summary,
        }
        if is_best:
            chosen = self.teacher if scored.weights_from == "teacher" else self.model
            best = {
                **base,
                "kind": "best",
                "epoch": epoch,
                "model": model_state(chosen),
                "weights_from": scored.weights_from,
                "metrics": scored.metrics,
            }
            save_atomic(best, self.best_path)
        # An epoch cut short by the time budget is not finished: a resume redoes it whole.
        if run.cut_short:
            finished, finished_history = epoch - 1, state.history[:-1]
        else:
            finished, finished_history = epoch, state.history
        selector = self.selector
        last = {
            **base,
            "kind": "last",
            "epoch": finished,
            "step": state.step,
            "model": model_state(self.model),
            "teacher": model_state(self.teacher),
            "optimizer": self.optimizer.state_dict(),
            "selector": selector.state_dict() if hasattr(selector, "state_dict") else None,
            "rng": rng_state(),
            "history": finished_history,
            "best_score": state.best_score,
            "best_epoch": state.best_epoch,
            "train_seconds": self.elapsed(),
        }
        save_atomic(last, self.last_path)
        write_text_atomic(
            self.out / "history.json",
            json.dumps({"class_names": self.class_names, "history": state.history}, indent=1),
        )

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        line = _epoch_line(metrics, self.config.epochs)
        log.info(line)
        if self.config.progress_bar:
            tqdm.write(line)

    def result(self, start_epoch: int, stopped: str) -> TrainResult:
        state = self.state
        return TrainResult(
            history=state.history,
            best_path=self.best_path,
            last_path=self.last_path,
            best_epoch=state.best_epoch,
            best_miou=state.best_score if math.isfinite(state.best_score) else math.nan,
            start_epoch=start_epoch,
            stopped=stopped,
            class_names=self.class_names,
            extra={"seconds": time.monotonic() - self.started, "device": str(self.device)},
        )


class EpochStats:
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


def _batches(
    dataset: TileDataset, batch_size: int, generator: torch.Generator, workers: int
) -> Iterator[Batch]:
    """Endless shuffled batches (a new permutation from ``generator`` each pass)."""
    while True:
        order = torch.randperm(len(dataset), generator=generator).tolist()
        loader = DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=workers)
        yield from loader


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
