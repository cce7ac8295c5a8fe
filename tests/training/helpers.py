"""Synthetic training data and a resumable training job (run in a subprocess by tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from rs_reasoner_training.data import ArraySource, TileDataset, TrainingData, grid_refs
from rs_reasoner_training.loop import TrainConfig, TrainResult, train
from rs_reasoner_training.models import UNet

#: Colours of the synthetic classes: background, red roofs, green fields.
COLOURS = np.array([[40, 40, 40], [200, 40, 40], [40, 180, 60]], dtype=np.uint8)
CLASSES = ["background", "roof", "field"]
#: The quickest real run of train_model / train_on_parcels: a small U-Net, two tiny steps.
QUICK_RUN = dict(
    model="unet", base_channels=8, depth=2, steps_per_epoch=2, batch_size=2, progress_bar=False
)


def synthetic_images(n: int, size: int = 64, seed: int = 0) -> tuple[list, list]:
    """Images of coloured rectangles on a dark background, with dense labels."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        label = np.zeros((size, size), np.uint8)
        for cls in (1, 2, 1, 2):
            h, w = rng.integers(8, size // 2, 2)
            r, c = rng.integers(0, size - h), rng.integers(0, size - w)
            label[r : r + h, c : c + w] = cls
        image = COLOURS[label].astype(np.int16) + rng.integers(-25, 26, (size, size, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        labels.append(label)
    return images, labels


def synthetic_data(size: int = 64) -> TrainingData:
    """4 labelled, 4 unlabelled and 2 held-out synthetic images, one tile each."""
    images, labels = synthetic_images(10, size)
    source = ArraySource(images, labels)

    def refs(ids: range) -> list:
        return [r for i in ids for r in grid_refs(i, size, size, size)]

    return TrainingData(
        CLASSES,
        TileDataset(source, refs(range(4)), "train"),
        TileDataset(source, refs(range(4, 8)), "unlabelled"),
        TileDataset(source, refs(range(8, 10)), "val"),
    )


def run_job(out_dir: str, epochs: int = 6, **overrides) -> TrainResult:
    """A small, deterministic teacher-student run (1 CPU thread for reproducibility)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = UNet(len(CLASSES), base_channels=8, depth=2)
        config = TrainConfig(
            out_dir,
            epochs=epochs,
            steps_per_epoch=4,
            batch_size=2,
            lr=3e-3,
            progress_bar=False,
            **overrides,
        )
        return train(model, synthetic_data(), config, model_spec=model.spec())
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    run_job(sys.argv[1], epochs=int(sys.argv[2]))
    Path(sys.argv[1], "finished").touch()
