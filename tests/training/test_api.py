"""The one-call entry point the CLI/service will use, on real parcels."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import torch

from rs_reasoner_training.api import train_on_parcels
from rs_reasoner_training.checkpoint import load_trained_model
from rs_reasoner_training.errors import CheckpointError, LabelLayerError


def test_train_on_parcels_end_to_end(shared_data, tmp_path):
    raster = shared_data / "spacenet_atlanta_pan_utm16n.tif"
    labels = tmp_path / "parcels.gpkg"
    frame = gpd.read_file(shared_data / "spacenet_atlanta_buildings.geojson")
    frame.assign(kind=np.where(frame.area < 200, "small", "large"))[["kind", "geometry"]].to_file(
        labels
    )
    stages = []
    options = dict(
        tile_size=128,
        epochs=1,
        steps_per_epoch=2,
        batch_size=2,
        base_channels=8,
        depth=2,
        progress_bar=False,
    )
    result = train_on_parcels(
        raster,
        labels,
        "kind",
        tmp_path / "run",
        callback=lambda stage, fraction, message: stages.append(stage),
        **options,
    )
    assert stages[0] == "preparing" and stages[-1] == "done"
    assert result.class_names == ["large", "small"]
    assert result.history[0]["miou"] is not None
    model, names, meta = load_trained_model(result.best_path)
    assert names == ["large", "small"] and meta["data"]["tiles"]["val"] > 0
    assert model(torch.rand(1, 3, 40, 50)).shape == (1, 2, 40, 50)
    # Resuming the same folder with other data is refused, not silently mixed.
    with pytest.raises(CheckpointError, match="other data"):
        train_on_parcels(raster, labels, "kind", tmp_path / "run", label_budget=0.5, **options)
    with pytest.raises(LabelLayerError, match="Available fields: kind"):
        train_on_parcels(raster, labels, "class", tmp_path / "bad", **options)
