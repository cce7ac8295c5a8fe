"""The options of a training run (:func:`rs_reasoner_training.loop.train`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rs_reasoner.schemas import TRAIN_DEFAULTS


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
        lr: AdamW learning rate (peak; after warm-up, poly decay to 0 over the planned
            steps or the time budget, whichever runs out first).
        weight_decay: AdamW weight decay.
        lr_schedule: ``"poly"`` (power 0.9, as UniMatch/SemiEarth) or ``"constant"``.
        warmup_fraction: Share of the planned steps over which the rate rises linearly
            from 0 to ``lr`` (randomly initialised heads take large, noisy first steps).
        min_steps_per_epoch: Fewest optimizer steps an epoch has when
            ``steps_per_epoch`` is None (a small raster is a few tiles: one pass would be
            a handful of steps and 30 epochs too short a run to learn anything).
        class_balance: Power of the inverse class frequency weighting the supervised
            cross-entropy (0: unweighted, 1: every class weighs the same; 0.5 lets rare
            classes count without over-predicting them). Frequencies are counted on up to
            64 labelled tiles before training.
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
    epochs: int = TRAIN_DEFAULTS["epochs"]
    time_budget_s: float | None = None
    steps_per_epoch: int | None = None
    batch_size: int = 8
    unlabelled_batch_size: int | None = None
    crop_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: Literal["poly", "constant"] = "poly"
    warmup_fraction: float = 0.05
    min_steps_per_epoch: int = 20
    class_balance: float = 0.5
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
    seed: int = TRAIN_DEFAULTS["seed"]
    resume: bool = True
    eval_batch_size: int = 8
    eval_teacher: bool = True
    num_workers: int = 0
    progress_bar: bool = True
