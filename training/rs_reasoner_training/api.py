"""Entry points for the CLI, the service and benchmarks: data + model + loop in one call."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import torch

from rs_reasoner_training.checkpoint import load_trained_model
from rs_reasoner_training.data.dataset import TrainingData
from rs_reasoner_training.loop import ProgressFn, TrainConfig, TrainResult, resolve_device, train
from rs_reasoner_training.models import UNet
from rs_reasoner_training.purify import ModelVerifier


def load_verifier(path: str | os.PathLike[str], device: str = "auto") -> ModelVerifier:
    """A frozen model from a ``best.pt`` as VLM-PP verifier (e.g. a supervised-only run)."""
    model, names, _ = load_trained_model(path, map_location=resolve_device(device))
    return ModelVerifier(model, names)


def train_model(
    data: TrainingData,
    output_dir: str | os.PathLike[str],
    *,
    verifier_checkpoint: str | os.PathLike[str] | None = None,
    base_channels: int = 32,
    depth: int = 4,
    callback: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    **config: Any,
) -> TrainResult:
    """Train the from-scratch U-Net on prepared data.

    Args:
        data: From :func:`~rs_reasoner_training.data.tiles.parcel_training_data` or
            :func:`~rs_reasoner_training.data.folder.folder_training_data`.
        output_dir: Folder for checkpoints (resumed when ``last.pt`` is there).
        verifier_checkpoint: ``best.pt`` of a model used as VLM-PP verifier; None for
            plain teacher-student.
        base_channels: U-Net width.
        depth: U-Net downsamplings.
        callback: ``callback(stage, fraction, message)``.
        cancel: Event that stops training (raises ``JobCancelled``).
        **config: Other :class:`~rs_reasoner_training.loop.TrainConfig` fields.

    Returns:
        The training result (``best_path`` is the model to serve).
    """
    cfg = TrainConfig(output_dir=str(output_dir), **config)
    torch.manual_seed(cfg.seed)  # same initial weights for the same seed
    model = UNet(len(data.class_names), base_channels=base_channels, depth=depth)
    verifier = load_verifier(verifier_checkpoint, cfg.device) if verifier_checkpoint else None
    return train(
        model,
        data,
        cfg,
        verifier=verifier,
        model_spec=model.spec(),
        callback=callback,
        cancel=cancel,
    )


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
    tile_size: int = 256,
    val_fraction: float = 0.2,
    label_budget: float = 1.0,
    seed: int = 0,
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
        bands: 1 or 3 raster bands (default: as the backend chooses).
        resolution: Working resolution in raster CRS units (default native).
        tile_size: Tile side in pixels.
        val_fraction: Fraction of parcels held out (whole groups).
        label_budget: Fraction of the training parcels whose labels are used.
        seed: Seed of split, budget, initial weights, order and augmentation.
        callback: ``callback(stage, fraction, message)``.
        cancel: Stop event.
        **train_options: :func:`train_model` options (``epochs``, ``time_budget_s``,
            ``batch_size``, ``lr``, ``verifier_checkpoint``, ``selection``,
            ``semi_supervised``, ``device``, ``resume``, ``progress_bar``...).

    Returns:
        The training result.
    """
    from rs_reasoner_training.data.tiles import parcel_training_data  # loads geopandas

    if callback is not None:
        callback("preparing", 0.0, "reading parcels and planning tiles")
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
    )
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return train_model(
        data, output_dir, seed=seed, callback=callback, cancel=cancel, **train_options
    )
