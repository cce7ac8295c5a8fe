"""The random forest candidate (the analyst's baseline as a model of ``train``): fitted on
real parcels (Slovenia's 68-band stack, SpaceNet's buildings), served by the classical
learner's model file, refitted on every label to serve, and bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rs_reasoner.models.classical import ClassicalModel
from rs_reasoner_training.classical import LabelledImage
from rs_reasoner_training.data.dataset import IGNORE_INDEX
from rs_reasoner_training.errors import LabelLayerError
from rs_reasoner_training.forest import ForestConfig, fit_forest, fit_forest_to_serve
from tests.support.parcels import labelled_scene

QUICK = ForestConfig(trees=30, threads=1, max_pixels_per_class=3000)


def _split(raw, valid, label, rows: int) -> tuple[LabelledImage, LabelledImage]:
    """Training labels above row ``rows``, validation labels below."""
    north = np.zeros(valid.shape, bool)
    north[:rows] = True
    train = LabelledImage(raw, valid, np.where(north, label, IGNORE_INDEX).astype(np.uint8))
    val = LabelledImage(raw, valid, np.where(~north, label, IGNORE_INDEX).astype(np.uint8))
    return train, val


def _recall(pred: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean recall over the classes present in ``labels``."""
    keep = labels != IGNORE_INDEX
    return float(np.mean([(pred[keep & (labels == c)] == c).mean()
                          for c in range(k) if (keep & (labels == c)).any()]))  # fmt: skip


def test_buildings_of_a_panchromatic_chip_binary(shared_data: Path, tmp_path: Path) -> None:
    raw, valid, label, names, stats, _ = labelled_scene(
        shared_data / "spacenet_atlanta_pan_utm16n.tif",
        shared_data / "spacenet_atlanta_buildings.geojson",
        "building",
        background="other",
    )
    train, val = _split(raw, valid, label, 450)
    served, scored = fit_forest_to_serve([train], names, stats, QUICK, val=[val])
    assert scored.info["learner"] == "lightgbm random forest" and scored.info["rounds"] == 30
    # The served forest learnt the validation labels too; the scored one did not.
    assert served is not scored and served.info["validation"].startswith("refitted")
    assert sum(served.info["train_pixels"].values()) > sum(scored.info["train_pixels"].values())
    probs = scored.predict_proba(raw, valid)
    assert probs.shape == (2, *valid.shape)
    np.testing.assert_allclose(probs[:, valid].sum(axis=0), 1.0, rtol=1e-5)
    # Classes at their true proportions (the per-class sample cap is weighted back): the
    # mean building probability is the building share of the training pixels, not the
    # half a balanced learner would give. One panchromatic band barely separates them.
    labelled = train.labels != IGNORE_INDEX
    share = (train.labels[labelled] == 1).mean()
    assert 0.03 < share < 0.3
    assert probs[1][labelled].mean() == pytest.approx(share, abs=0.03)
    # The classical learner's model file serves it (same predictions after a round trip).
    path = served.save(tmp_path)
    again = ClassicalModel.load(path)
    assert len(again.feature_names) == stats.count == 1  # the band alone
    np.testing.assert_allclose(again.predict_proba(raw, valid), served.predict_proba(raw, valid),
                               atol=1e-6)  # fmt: skip


def test_68_band_stack_learns_its_parcels(shared_data: Path) -> None:
    root = shared_data / "slovenia"
    raw, valid, label, names, stats, _ = labelled_scene(
        root / "slovenia_ndvi_68dates_utm33n.tif", root / "slovenia_lulc.gpkg", "LULC_NAME"
    )
    train, _ = _split(raw, valid, label, raw.shape[1])  # every parcel trains
    model = fit_forest([train], names, stats, QUICK)
    # Bands plus the per-pixel band summary of a many-band stack; NaN (clouds) kept.
    assert len(model.feature_names) == stats.count + 4
    pred = model.predict_proba(raw, valid).argmax(axis=0)
    assert _recall(np.where(valid, pred, IGNORE_INDEX), train.labels, len(names)) > 0.7


def test_a_class_without_training_pixels_is_refused(shared_data: Path) -> None:
    raw, valid, label, names, stats, _ = labelled_scene(
        shared_data / "spacenet_atlanta_pan_utm16n.tif",
        shared_data / "spacenet_atlanta_buildings.geojson",
        "building",
        background="other",
    )
    others = np.where(label == 0, 0, IGNORE_INDEX).astype(np.uint8)
    with pytest.raises(LabelLayerError, match="No training pixel with data for class"):
        fit_forest([LabelledImage(raw, valid, others)], names, stats, QUICK)
