"""The one-call entry point the CLI/service will use, on real parcels."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import torch

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.models.checkpoint import load_checkpoint, load_trained_model
from rs_reasoner_training.api import train_model, train_on_parcels
from rs_reasoner_training.errors import CheckpointError, LabelLayerError
from tests.training.helpers import QUICK_RUN, synthetic_data


def test_train_on_parcels_end_to_end(shared_data, tmp_path):
    raster = shared_data / "spacenet_atlanta_pan_utm16n.tif"
    labels = tmp_path / "parcels.gpkg"
    frame = gpd.read_file(shared_data / "spacenet_atlanta_buildings.geojson")
    frame.assign(kind=np.where(frame.area < 200, "small", "large"))[["kind", "geometry"]].to_file(
        labels
    )
    stages = []
    options = dict(QUICK_RUN, tile_size=128, epochs=1, verifier=False)  # a bool, as the service
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
    # Every band of the raster (one panchromatic band here), normalised, is the input.
    assert meta["data"]["band_stats"]["bands"] == [1]
    assert model(torch.rand(1, 1, 40, 50)).shape == (1, 2, 40, 50)
    # Resuming the same folder with other data is refused, not silently mixed.
    with pytest.raises(CheckpointError, match="other data"):
        train_on_parcels(raster, labels, "kind", tmp_path / "run", label_budget=0.5, **options)
    with pytest.raises(LabelLayerError, match="Available fields: kind"):
        train_on_parcels(raster, labels, "class", tmp_path / "bad", **options)


def test_verifier_true_without_clip_weights_trains_in_two_stages(tmp_path, offline_weights):
    progress = []
    result = train_model(
        synthetic_data(),
        tmp_path,
        verifier=True,
        epochs=2,
        callback=lambda stage, fraction, message: progress.append((stage, fraction, message)),
        **QUICK_RUN,
    )
    stages = [s for s, _, _ in progress]
    fractions = [f for _, f, _ in progress]
    assert stages[0] == "preparing" and "model: unet" in progress[0][2]
    assert "trained supervised-only on the labelled tiles first" in progress[0][2]
    assert stages.count("done") == 1 and stages[-1] == "done"
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("stage 1/2" in (m or "") for _, _, m in progress)
    # Stage 1: supervised only, its own folder; stage 2 is purified by it.
    stage1 = load_checkpoint(tmp_path / "verifier" / "best.pt")
    assert stage1["config"]["semi_supervised"] is False
    assert str(tmp_path / "verifier" / "best.pt") in result.extra["verifier"]
    first = result.history[0]
    assert first["purified_fraction"] + first["rectified_fraction"] > 0
    # Resuming the finished run retrains nothing.
    again = train_model(synthetic_data(), tmp_path, verifier=True, epochs=2, **QUICK_RUN)
    assert again.start_epoch == 2 and again.history == result.history


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidRequestError, match="Unknown training model") as info:
        train_model(synthetic_data(), tmp_path, model="resnet", epochs=1)
    assert "rs-zeroseg" in info.value.hint
    with pytest.raises(InvalidRequestError, match="Invalid RS-ZeroSeg options"):
        train_model(synthetic_data(), tmp_path, model="rs-zeroseg", rs_zeroseg={"bogus": 1})
