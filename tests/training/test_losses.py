"""Supervised losses: class weights from label frequencies (on the real Slovenia parcels)
and weighted cross-entropy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rs_reasoner.raster import open_raster
from rs_reasoner.raster.band_stats import BandStats, read_bands
from rs_reasoner_training.data.band_arrays import BandArraySource
from rs_reasoner_training.data.dataset import IGNORE_INDEX, TileDataset, grid_refs
from rs_reasoner_training.data.parcels import label_raster
from rs_reasoner_training.losses import class_frequency_weights, supervised_ce


@pytest.fixture(scope="module")
def slovenia_tiles():
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "slovenia"
    if not root.is_dir():
        pytest.skip("shared Slovenia sample missing")
    raster = root / "slovenia_ndvi_68dates_utm33n.tif"
    label, parcels = label_raster(raster, root / "slovenia_lulc.gpkg", "LULC_NAME")
    with open_raster(raster) as ds:
        raw, valid = read_bands(ds, range(1, 69))
        stats = BandStats.from_raster(ds)
    source = BandArraySource([raw], [valid], {"train": [label]}, stats)
    dataset = TileDataset(source, grid_refs(0, *valid.shape, 32), "train")
    return dataset, label, valid, parcels.class_names


def test_weights_follow_inverse_frequency_with_mean_one(slovenia_tiles) -> None:
    dataset, label, valid, names = slovenia_tiles
    k = len(names)
    counts = np.bincount(label[valid & (label != IGNORE_INDEX)], minlength=k).astype(float)
    freq = counts / counts.sum()
    w = class_frequency_weights(dataset, k, 0.5).double().numpy()
    np.testing.assert_allclose(w * np.sqrt(freq), (w * np.sqrt(freq))[0], rtol=1e-6)
    assert (w * freq).sum() == pytest.approx(1.0)
    rare, common = int(np.argmin(counts)), int(np.argmax(counts))
    assert w[rare] > w[common]
    full = class_frequency_weights(dataset, k, 1.0).double().numpy()
    np.testing.assert_allclose(full * freq, freq @ full / k, rtol=1e-6)  # equal totals
    assert class_frequency_weights(dataset, k, 0.0) is None
    # A class no tile shows gets the largest weight, not a division by zero.
    extra = class_frequency_weights(dataset, k + 1, 0.5)
    assert extra[k] == extra[:k].max()


def test_weighted_cross_entropy_is_the_weighted_mean() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (2, 4, 4), generator=g)
    labels[0, 0] = IGNORE_INDEX
    weight = torch.tensor([0.5, 1.0, 3.0])
    per_pixel = F.cross_entropy(logits, labels, reduction="none", ignore_index=IGNORE_INDEX)
    keep = labels != IGNORE_INDEX
    w = weight[labels.clamp(max=2)] * keep
    expected = (per_pixel * w).sum() / w.sum()
    assert supervised_ce(logits, labels, weight) == pytest.approx(float(expected), rel=1e-5)
    none = torch.full((1, 4, 4), IGNORE_INDEX)
    assert float(supervised_ce(logits[:1], none, weight)) == 0.0
