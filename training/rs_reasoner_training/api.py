"""Entry points for the CLI, the service and benchmarks: data + model + loop in one call.

**Model** of :func:`train_model` (``model=``, one network): ``"rs-zeroseg"`` (the
open-vocabulary RS-ZeroSeg with the user's class names, :mod:`.models.rs_zeroseg`),
``"unet"`` (from scratch), or ``"auto"`` (default): RS-ZeroSeg when its pretrained CLIP and
DINOv2 backbone files are on this machine, else the U-Net. The choice is reported in the
first progress message. :func:`train_on_parcels` (``rs-reasoner train``) also trains
``"classical"``, ``"random-forest"`` and, by default, ``"auto"``: the candidates of
:mod:`.auto` (classical learner and U-Net variants on every band), keeping the best on
the validation parcels.

**Verifier** (``verifier=``, see :mod:`.verifiers`): ``"auto"`` (default) uses
``clip-openvocab`` when its weights are on this machine and no verifier otherwise;
``True`` uses ``clip-openvocab`` when available and otherwise trains in two stages
(stage 1: the same model supervised-only on the labelled tiles, in ``output_dir/verifier``;
stage 2: teacher-student with VLM-PP, that model as the frozen verifier); ``False`` or
``"none"``: plain teacher-student; ``"checkpoint:<path>"``, ``"supervised"`` or a registered
open-vocabulary model name choose explicitly.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.models.unet import UNet
from rs_reasoner.schemas import TRAIN_DEFAULTS, TRAINERS
from rs_reasoner_training.auto import (
    TREE_CANDIDATES,
    check_candidates,
    default_candidates,
    train_auto,
)
from rs_reasoner_training.classical import ClassicalConfig
from rs_reasoner_training.data.dataset import TrainingData
from rs_reasoner_training.loop import ProgressFn, TrainConfig, TrainResult, train
from rs_reasoner_training.plan import plan_lines, plan_record
from rs_reasoner_training.threads import limit_threads
from rs_reasoner_training.verifiers import VerifierChoice, VerifierPlan, plan_verifier

MODEL_CHOICES = ("auto", "rs-zeroseg", "unet")
#: Models :func:`train_on_parcels` trains: the networks, the classical learner, or
#: ``auto``: several candidates, the best on validation kept (:mod:`.auto`).
PARCEL_MODEL_CHOICES = TRAINERS
#: Options of :func:`train_model` besides :class:`TrainConfig` fields (what
#: ``rs-reasoner train --train-option`` and the service's training options may set).
MODEL_OPTIONS = frozenset(
    {"model", "pretrained", "base_channels", "depth", "verifier_epochs", "rs_zeroseg", "prompts"}
    | {"candidates"}
)
#: Share of the progress bar (and of a time budget) given to stage 1 of two-stage runs.
_STAGE1_SHARE = 1 / 3


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """The model to train: ``arch``, whether on pretrained backbones, and why."""

    arch: str
    pretrained: bool
    description: str


def _check_rs_zeroseg_options(options: Mapping[str, Any] | None) -> None:
    """Raise a user error for RS-ZeroSeg options that are not a valid config."""
    from rs_reasoner.segmenters.open_vocab.rs_zeroseg.config import RSZeroSegConfig

    try:
        RSZeroSegConfig.from_dict(dict(options or {}))
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(
            f"Invalid RS-ZeroSeg options: {exc}",
            "Use RSZeroSegConfig fields, e.g. {'clip_trainable': 'attention'}.",
        ) from None


def choose_model(
    model: str = "auto",
    pretrained: bool | None = None,
    rs_zeroseg: Mapping[str, Any] | None = None,
) -> ModelChoice:
    """Resolve the model option.

    Args:
        model: ``"auto"``, ``"rs-zeroseg"`` or ``"unet"``.
        pretrained: RS-ZeroSeg backbones: True requires the local pretrained files,
            False builds a small random one, None uses the files when present.
        rs_zeroseg: RSZeroSegConfig overrides (they decide which backbone files count).

    Returns:
        The choice.

    Raises:
        InvalidRequestError: Unknown model name or invalid RS-ZeroSeg options.
        MissingWeightsError: ``pretrained=True`` and the backbone files are missing.
    """
    from rs_reasoner_training.models.rs_zeroseg import backbones_available

    name = str(model).strip().lower()
    if name not in MODEL_CHOICES:
        raise InvalidRequestError(
            f"Unknown training model {model!r}.", f"Choose one of: {', '.join(MODEL_CHOICES)}."
        )
    if name == "unet":
        return ModelChoice("unet", False, "unet (trained from scratch)")
    _check_rs_zeroseg_options(rs_zeroseg)
    if pretrained is False:
        if name == "auto":
            return ModelChoice("unet", False, "unet (trained from scratch)")
        return ModelChoice(
            "rs-zeroseg", False, "rs-zeroseg, small and randomly initialised (pretrained=False)"
        )
    available = backbones_available(rs_zeroseg)
    if available:
        return ModelChoice(
            "rs-zeroseg",
            True,
            "rs-zeroseg on the local pretrained CLIP + DINOv2 backbones "
            "(CLIP attention layers fine-tuned, DINOv2 frozen)",
        )
    if pretrained is True:
        from rs_reasoner.segmenters.open_vocab.rs_zeroseg.config import RSZeroSegConfig
        from rs_reasoner.segmenters.open_vocab.rs_zeroseg.model import MODEL_NAME, weight_specs
        from rs_reasoner.weights import resolve

        for spec in weight_specs(RSZeroSegConfig(**dict(rs_zeroseg or {}))):
            resolve(spec, MODEL_NAME)  # raises MissingWeightsError with the pull command
    missing = "RS-ZeroSeg backbone weights (CLIP, DINOv2) are not on this machine"
    if name == "auto":
        return ModelChoice("unet", False, f"unet (trained from scratch): {missing}")
    return ModelChoice(
        "rs-zeroseg", False, f"rs-zeroseg, small and randomly initialised: {missing}"
    )


def initial_model(
    choice: ModelChoice,
    class_names: Sequence[str],
    *,
    crop: int,
    rs_zeroseg: Mapping[str, Any] | None = None,
    prompts: Mapping[str, Sequence[str]] | None = None,
    base_channels: int = 32,
    depth: int = 4,
    in_channels: int = 3,
) -> nn.Module:
    """A freshly initialised model for ``choice`` (seed torch first for repeatability).

    Args:
        choice: From :func:`choose_model`.
        class_names: Output classes.
        crop: Training crop side (RS-ZeroSeg input size).
        rs_zeroseg: RSZeroSegConfig overrides.
        prompts: RS-ZeroSeg text synonyms per class.
        base_channels: U-Net width.
        depth: U-Net downsamplings.
        in_channels: Input bands (RS-ZeroSeg reads RGB only).

    Returns:
        The model.

    Raises:
        InvalidRequestError: RS-ZeroSeg asked for with other than 3 bands.
    """
    if choice.arch == "unet":
        return UNet(len(class_names), base_channels=base_channels, depth=depth,
                    in_channels=in_channels)  # fmt: skip
    if in_channels != 3:
        raise InvalidRequestError(
            f"RS-ZeroSeg reads 3 bands (RGB), not {in_channels}.",
            "Train the U-Net (model 'unet') on these bands, or choose 3 bands.",
        )
    from rs_reasoner_training.models.rs_zeroseg import build_rs_zeroseg

    return build_rs_zeroseg(
        class_names, pretrained=choice.pretrained, config=rs_zeroseg, crop=crop, prompts=prompts
    )


def _stage_callback(
    report: ProgressFn, start: float, share: float, label: str, final: bool
) -> ProgressFn:
    """Map a stage's progress into [start, start + share], messages prefixed by ``label``;
    only the final stage's "done" reaches the caller as "done"."""

    def callback(stage: str, fraction: float, message: str | None) -> None:
        text = f"{label}: {message}" if message else label
        if stage == "done" and not final:
            stage = "training"
        report(stage, start + share * fraction, text)

    return callback


def train_model(
    data: TrainingData,
    output_dir: str | os.PathLike[str],
    *,
    model: str = "auto",
    pretrained: bool | None = None,
    rs_zeroseg: Mapping[str, Any] | None = None,
    prompts: Mapping[str, Sequence[str]] | None = None,
    base_channels: int = 32,
    depth: int = 4,
    verifier: VerifierChoice = "auto",
    verifier_epochs: int | None = None,
    callback: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    **config: Any,
) -> TrainResult:
    """Train a model on prepared data (see the module docstring for the choices).

    Args:
        data: From :func:`~rs_reasoner_training.data.tiles.parcel_training_data` or
            :func:`~rs_reasoner_training.data.folder.folder_training_data`.
        output_dir: Folder for checkpoints (resumed when ``last.pt`` is there).
        model: ``"auto"``, ``"rs-zeroseg"`` or ``"unet"``.
        pretrained: RS-ZeroSeg backbones (None: pretrained when on this machine).
        rs_zeroseg: RSZeroSegConfig overrides (e.g. freezing, sizes).
        prompts: Text synonyms per class name (RS-ZeroSeg and open-vocabulary verifiers).
        base_channels: U-Net width.
        depth: U-Net downsamplings.
        verifier: VLM-PP verifier choice (bool, name, ``checkpoint:<path>``, object).
        verifier_epochs: Epochs of stage 1 in two-stage runs (default: ``epochs``).
        callback: ``callback(stage, fraction, message)``.
        cancel: Event that stops training (raises ``JobCancelled``).
        **config: Other :class:`~rs_reasoner_training.loop.TrainConfig` fields.

    Returns:
        The training result (``best_path`` is the model to serve); ``extra`` has
        ``model`` and ``verifier`` descriptions.
    """
    cfg = TrainConfig(output_dir=str(output_dir), **config)
    report = callback or (lambda stage, fraction, message: None)
    choice = choose_model(model, pretrained, rs_zeroseg)
    crop = cfg.crop_size or data.summary.get("tile_size") or data.labelled.refs[0].size

    def fresh(seed: int) -> nn.Module:
        torch.manual_seed(seed)  # same initial weights for the same seed
        return initial_model(
            choice,
            data.class_names,
            crop=int(crop),
            rs_zeroseg=rs_zeroseg,
            prompts=prompts,
            base_channels=base_channels,
            depth=depth,
            in_channels=data.in_channels,
        )

    semi = cfg.semi_supervised and data.unlabelled is not None and len(data.unlabelled) > 0
    if not semi:
        plan = VerifierPlan("none", "none (no unlabelled tiles are used)")
    else:
        plan = plan_verifier(verifier, cfg.device, prompts)
    report("preparing", 0.0, f"model: {choice.description}; verifier: {plan.description}")

    start, share = 0.0, 1.0
    active = plan.verifier
    if plan.kind == "supervised":
        stage1 = dataclasses.replace(
            cfg,
            output_dir=str(Path(output_dir) / "verifier"),
            semi_supervised=False,
            epochs=verifier_epochs or cfg.epochs,
            seed=cfg.seed + 1,  # another initialisation: a more independent opinion
            time_budget_s=None if cfg.time_budget_s is None else cfg.time_budget_s * _STAGE1_SHARE,
        )
        first = fresh(stage1.seed)
        label = "stage 1/2 (supervised-only verifier)"
        result1 = train(
            first,
            data,
            stage1,
            model_spec=first.spec(),
            callback=_stage_callback(report, 0.0, _STAGE1_SHARE, label, final=False),
            cancel=cancel,
        )
        active = plan_verifier(Path(result1.best_path), cfg.device).verifier
        plan = dataclasses.replace(
            plan, description=f"{plan.description}: {result1.best_path}", verifier=active
        )
        start, share = _STAGE1_SHARE, 1 - _STAGE1_SHARE
        if cfg.time_budget_s is not None:
            cfg = dataclasses.replace(cfg, time_budget_s=cfg.time_budget_s * (1 - _STAGE1_SHARE))
        del first

    student = fresh(cfg.seed)
    if start:
        stage_report = _stage_callback(report, start, share, "stage 2/2", final=True)
    else:
        stage_report = report
    result = train(
        student,
        data,
        cfg,
        verifier=active,
        model_spec=student.spec(),
        callback=stage_report,
        cancel=cancel,
    )
    result.extra.update(model=choice.description, verifier=plan.description)
    return result


def train_on_parcels(
    raster: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    class_field: str,
    output_dir: str | os.PathLike[str],
    *,
    layer: str | None = None,
    aoi: str | os.PathLike[str] | None = None,
    background: str | None = None,
    bands: list[int] | None = None,
    resolution: float | None = None,
    tile_size: int = TRAIN_DEFAULTS["tile_size"],
    val_fraction: float = TRAIN_DEFAULTS["val_fraction"],
    label_budget: float = TRAIN_DEFAULTS["label_budget"],
    seed: int = TRAIN_DEFAULTS["seed"],
    weak_labels: Sequence[str] | None = None,
    classes: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    callback: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    **train_options: Any,
) -> TrainResult:
    """Fine-tune on labelled parcels: what ``rs-reasoner train`` runs.

    Args:
        raster: Raster path.
        labels: Parcels (GeoPackage/Shapefile/GeoJSON).
        class_field: Field with the class of each parcel.
        output_dir: Checkpoint folder (``best.pt`` to serve, ``last.pt`` to resume).
        layer: Layer inside a multi-layer file.
        aoi: Optional area-of-interest polygon layer.
        background: Class name for unlabelled pixels in labelled tiles (complete parcels).
        bands: Raster bands (default: every band; RS-ZeroSeg: 1 or 3, as the backend
            chooses RGB).
        resolution: Working resolution in raster CRS units (default native).
        tile_size: Tile side in pixels, at most (a small raster gets smaller tiles,
            :func:`~rs_reasoner_training.data.tiles.fit_tile_size`).
        val_fraction: Fraction of parcels held out (whole groups).
        label_budget: Fraction of the training parcels whose labels are used.
        seed: Seed of split, budget, initial weights, order and augmentation.
        weak_labels: Land-cover rasters ``PATH[:LEGEND][:MAPPING.csv]`` as extra weak
            labels (:mod:`.weak`); their agreement report goes to ``callback``.
        classes: Class table file naming the class field's values (``VALUE,NAME``
            lines; classes follow its order), e.g. for a numeric class field.
        threads: CPU threads (torch, LightGBM, GDAL); None: all cores.
        callback: ``callback(stage, fraction, message)``; the plan (parcels and tiles
            per role, the tile size, classes without validation) comes first, as
            ``"preparing"`` messages.
        cancel: Stop event.
        **train_options: ``model``: ``"auto"`` (default: the candidates of
            :mod:`.auto`, the best on the validation parcels kept; ``candidates`` names
            them), ``"classical"``, ``"random-forest"``, ``"unet"`` (every band,
            normalised) or
            ``"rs-zeroseg"`` (RGB); then :func:`train_model` options: ``pretrained``,
            ``verifier`` (bool: True = default verifier, False = none; or a name, see
            :mod:`.verifiers`), ``epochs``, ``time_budget_s``, ``batch_size``, ``lr``,
            ``selection``, ``semi_supervised`` (single networks; ``auto`` candidates set
            their own), ``device``, ``resume``, ``progress_bar``...

    Returns:
        The training result (``auto``: the chosen candidate's, with the comparison in
        ``extra``).
    """
    from rs_reasoner_training.data.tiles import parcel_training_data  # loads geopandas

    name, candidates = _model_options(train_options)
    report = callback or (lambda stage, fraction, message: None)
    with limit_threads(threads):
        report("preparing", 0.0, "reading parcels and planning tiles")
        data = parcel_training_data(
            raster,
            labels,
            class_field,
            layer=layer,
            aoi=aoi,
            background=background,
            bands=bands,
            resolution=resolution,
            tile_size=tile_size,
            val_fraction=val_fraction,
            label_budget=label_budget,
            seed=seed,
            all_bands=name != "rs-zeroseg",  # RS-ZeroSeg's CLIP reads 8-bit RGB
            classes=classes,
        )
        if weak_labels:
            from rs_reasoner_training.weak.training import add_weak_labels

            def note(line: str) -> None:
                report("preparing", 0.0, line)

            data = add_weak_labels(data, weak_labels, seed=seed, note=note, record=output_dir)
        return train_prepared(
            data, output_dir, name, candidates, seed=seed, threads=threads,
            callback=callback, cancel=cancel, **train_options,
        )  # fmt: skip


def train_on_folders(
    images: str | os.PathLike[str],
    masks: str | os.PathLike[str],
    classes: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    bands: list[int] | None = None,
    tile_size: int = TRAIN_DEFAULTS["tile_size"],
    val_fraction: float = TRAIN_DEFAULTS["val_fraction"],
    label_budget: float = TRAIN_DEFAULTS["label_budget"],
    seed: int = TRAIN_DEFAULTS["seed"],
    threads: int | None = None,
    callback: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    **train_options: Any,
) -> TrainResult:
    """Fine-tune on an image folder and a mask folder: what ``rs-reasoner train --images
    DIR --masks DIR --classes FILE`` runs.

    Args:
        images: Folder of images (every band is used unless ``bands`` are given).
        masks: Folder of masks named like their images.
        classes: Class table file (``VALUE,NAME`` or ``#RRGGBB,NAME`` lines; see
            :mod:`.data.mask_folders`).
        output_dir: The model's folder.
        bands: 1-based bands of the images (default: all).
        tile_size: Tile side, at most (images smaller than a tile get smaller tiles).
        val_fraction: Fraction of masked images held out whole.
        label_budget: Fraction of the other masked images whose masks are used.
        seed: Seed of split, budget, initial weights, order and augmentation.
        threads: CPU threads (torch, LightGBM, GDAL); None: all cores.
        callback: ``callback(stage, fraction, message)``.
        cancel: Stop event.
        **train_options: As for :func:`train_on_parcels` (``model`` ``"rs-zeroseg"`` is
            not offered: folders are read as normalised bands).

    Returns:
        The training result.
    """
    from rs_reasoner_training.data.mask_folders import mask_folder_training_data

    name, candidates = _model_options(train_options)
    if name == "rs-zeroseg":
        raise InvalidRequestError(
            "RS-ZeroSeg is trained on a raster and parcels, not on image + mask folders.",
            "Leave the model option out (auto), or choose 'unet' or 'classical'.",
        )
    report = callback or (lambda stage, fraction, message: None)
    with limit_threads(threads):
        report("preparing", 0.0, "reading the images and masks")
        data = mask_folder_training_data(
            images, masks, classes, bands=bands, tile_size=tile_size,
            val_fraction=val_fraction, label_budget=label_budget, seed=seed,
        )  # fmt: skip
        return train_prepared(
            data, output_dir, name, candidates, seed=seed, threads=threads,
            callback=callback, cancel=cancel, **train_options,
        )  # fmt: skip


def _model_options(train_options: dict[str, Any]) -> tuple[str, tuple[str, ...] | None]:
    """Pop and check the ``model`` and ``candidates`` options.

    Raises:
        InvalidRequestError: An unknown model or candidate, or candidates without auto.
    """
    name = str(train_options.pop("model", "auto")).strip().lower()
    if name not in PARCEL_MODEL_CHOICES:
        raise InvalidRequestError(
            f"Unknown training model {name!r}.",
            f"Choose one of: {', '.join(PARCEL_MODEL_CHOICES)}.",
        )
    candidates = train_options.pop("candidates", None)
    if candidates is not None and name != "auto":
        raise InvalidRequestError(
            "Candidates are chosen among only with model 'auto'.",
            "Leave the model option out (auto) or drop the candidates option.",
        )
    if candidates is not None:
        candidates = check_candidates(
            [c.strip() for c in candidates.split(",")] if isinstance(candidates, str)
            else list(candidates)
        )  # fmt: skip
    return name, candidates


def train_prepared(
    data: TrainingData,
    output_dir: str | os.PathLike[str],
    name: str,
    candidates: Sequence[str] | None = None,
    *,
    seed: int = TRAIN_DEFAULTS["seed"],
    threads: int | None = None,
    callback: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    **train_options: Any,
) -> TrainResult:
    """Print the plan, then train the model ``name`` (``auto``, ``classical`` or a network)
    on prepared data; the result's ``extra["plan"]`` is the plan's record."""
    report = callback or (lambda stage, fraction, message: None)
    for line in plan_lines(data.summary):
        report("preparing", 0.0, line)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    if name in ("auto", *TREE_CANDIDATES):
        # Each candidate sets its own semi-supervision; the switches say which may run.
        semi = train_options.pop("semi_supervised", TRAIN_DEFAULTS["semi_supervised"])
        verifier = train_options.pop("verifier", "auto")
        if name in TREE_CANDIDATES:
            candidates = (name,)
        result = train_auto(
            data,
            output_dir,
            train_network=functools.partial(train_model, seed=seed),
            candidates=candidates or default_candidates(semi, verifier),
            time_budget_s=train_options.pop("time_budget_s", None),
            classical=ClassicalConfig(threads=threads, seed=seed),
            verifier=verifier,
            device=train_options.pop("device", "auto"),
            callback=callback,
            cancel=cancel,
            **train_options,
        )
    else:
        result = train_model(
            data, output_dir, model=name, seed=seed, callback=callback, cancel=cancel,
            **train_options,
        )  # fmt: skip
    result.extra["plan"] = plan_record(data.summary)
    return result


class ParcelTrainer:
    """This package as the backend's trainer (:class:`rs_reasoner.training_plugin.Trainer`),
    declared in the ``rs_reasoner.trainers`` entry-point group."""

    def option_names(self) -> frozenset[str]:
        """:data:`MODEL_OPTIONS` and the :class:`TrainConfig` fields."""
        return MODEL_OPTIONS | {f.name for f in dataclasses.fields(TrainConfig)}

    def train_on_parcels(self, *args: Any, **kwargs: Any) -> TrainResult:
        """:func:`train_on_parcels`."""
        return train_on_parcels(*args, **kwargs)

    def train_on_folders(self, *args: Any, **kwargs: Any) -> TrainResult:
        """:func:`train_on_folders`."""
        return train_on_folders(*args, **kwargs)


#: The entry point's object.
TRAINER = ParcelTrainer()
