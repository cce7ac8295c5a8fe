"""The classical learner: fitting on real parcels (Slovenia NDVI stack, SpaceNet buildings),
the model file, block-wise prediction, class weights, and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rs_reasoner.models import classical as classical_model
from rs_reasoner.models.classical import FILE_NAME, FORMAT, ClassicalModel
from rs_reasoner.models.pixel_features import FeatureSpec
from rs_reasoner.raster.band_stats import BandStats
from rs_reasoner_training.classical import (
    ClassicalConfig,
    LabelledImage,
    PixelSample,
    fit_classical,
    fit_classical_to_serve,
)
from rs_reasoner_training.data.dataset import IGNORE_INDEX
from rs_reasoner_training.errors import LabelLayerError
from tests.support.parcels import labelled_scene

QUICK = ClassicalConfig(rounds=40, rounds_without_validation=40, threads=1,
                        max_pixels_per_class=3000)  # fmt: skip


@pytest.fixture(scope="module")
def slovenia():
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "slovenia"
    if not root.is_dir():
        pytest.skip("shared Slovenia sample missing")
    return labelled_scene(root / "slovenia_ndvi_68dates_utm33n.tif", root / "slovenia_lulc.gpkg",
                  "LULC_NAME")  # fmt: skip


def _halves(raw, valid, label):
    west = np.zeros(label.shape, bool)
    west[:, : label.shape[1] // 2] = True
    train = LabelledImage(raw, valid, np.where(west, label, IGNORE_INDEX).astype(np.uint8))
    val = LabelledImage(raw, valid, np.where(~west, label, IGNORE_INDEX).astype(np.uint8))
    return train, val


def test_fits_68_bands_and_round_trips_through_its_file(slovenia, tmp_path: Path) -> None:
    raw, valid, label, names, stats, roles = slovenia
    spec = FeatureSpec.for_bands(stats.count, roles)
    train, val = _halves(raw, valid, label)
    present = [c for c in range(len(names)) if (train.labels == c).any()]
    names = [names[c] for c in present]
    remap = np.full(256, IGNORE_INDEX, np.uint8)
    remap[present] = np.arange(len(present))
    train = LabelledImage(raw, valid, remap[train.labels])
    val = LabelledImage(raw, valid, remap[val.labels])
    model = fit_classical([train], names, stats, spec, QUICK, val=[val])
    assert set(model.info["train_pixels"]) == set(names)
    assert model.info["rounds"] <= QUICK.rounds

    # Validation labels on a 6x6 px corner: too few to steer; fixed rounds, no prior shift.
    corner = np.full(valid.shape, IGNORE_INDEX, np.uint8)
    corner[:6, :6] = val.labels[:6, :6] if (val.labels[:6, :6] != IGNORE_INDEX).any() else 0
    small = fit_classical(
        [train], names, stats, spec, QUICK, val=[LabelledImage(raw, valid, corner)]
    )
    assert small.info["validation"].startswith("not used: fewer than 100 validation pixels of")
    assert small.info["rounds"] == QUICK.rounds_without_validation
    assert small.class_bias is None

    probs = model.predict_proba(raw, valid)
    assert probs.shape == (len(names), *valid.shape)
    np.testing.assert_allclose(probs[:, valid].sum(axis=0), 1.0, rtol=1e-5)
    assert not probs[:, ~valid].any()
    # It learnt its training parcels: mean recall over classes far above chance.
    pred = probs.argmax(axis=0)
    lab = train.labels
    recalls = [(pred[lab == c] == c).mean() for c in range(len(names)) if (lab == c).any()]
    assert np.mean(recalls) > 0.6

    path = model.save(tmp_path)
    assert path == tmp_path / FILE_NAME
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and doc["bands"]["names"][0] == "NDVI 2015-07-11"
    again = ClassicalModel.load(tmp_path, threads=1)
    assert again.class_names == names and again.stats == stats and again.spec == spec
    np.testing.assert_array_equal(again.predict_proba(raw, valid), probs)


def test_block_wise_prediction_equals_whole_image(slovenia, monkeypatch) -> None:
    raw, valid, label, names, stats, roles = slovenia
    spec = FeatureSpec.for_bands(stats.count, roles, (3, 9))
    train, _ = _halves(raw, valid, label)
    keep = np.isin(train.labels, [2, 3])  # forest vs grassland: binary objective
    labels = np.where(keep, train.labels - 2, IGNORE_INDEX).astype(np.uint8)
    model = fit_classical([LabelledImage(raw, valid, labels)], ["forest", "grassland"], stats,
                          spec, QUICK)  # fmt: skip
    whole = model.predict_proba(raw, valid)
    assert whole.shape[0] == 2
    monkeypatch.setattr(classical_model, "_BLOCK_PIXELS", 7 * raw.shape[2])  # 7-row blocks
    np.testing.assert_allclose(model.predict_proba(raw, valid), whole, atol=1e-6)


def _spacenet(shared_data: Path):
    """The SpaceNet chip with its buildings (background 'other')."""
    return labelled_scene(
        shared_data / "spacenet_atlanta_pan_utm16n.tif",
        shared_data / "spacenet_atlanta_buildings.geojson",
        "building",
        background="other",
    )


def _north_south(raw, valid, label) -> tuple[LabelledImage, LabelledImage]:
    """Training labels north of row 450, validation labels south of it."""
    north = np.zeros(valid.shape, bool)
    north[:450] = True
    train = LabelledImage(raw, valid, np.where(north, label, IGNORE_INDEX).astype(np.uint8))
    val = LabelledImage(raw, valid, np.where(~north, label, IGNORE_INDEX).astype(np.uint8))
    return train, val


def test_buildings_on_a_panchromatic_chip(shared_data: Path) -> None:
    raw, valid, label, names, stats, roles = _spacenet(shared_data)
    assert names == ["other", "yes"]
    spec = FeatureSpec.for_bands(stats.count, roles)
    model = fit_classical([LabelledImage(raw, valid, label)], names, stats, spec, QUICK)
    probs = model.predict_proba(raw[:, :300, :300], valid[:300, :300])
    building = probs[1][label[:300, :300] == 1].mean()
    other = probs[1][label[:300, :300] == 0].mean()
    assert building > other + 0.2  # roofs score higher than everything else


def test_class_weights_undo_sampling_then_balance() -> None:
    sample = PixelSample(np.zeros((5, 1), np.float32), np.array([0, 0, 0, 1, 1]),
                         totals=np.array([300, 20]))  # fmt: skip
    w = sample.weights(1.0)
    assert w[:3].sum() == pytest.approx(w[3:].sum())  # balanced: equal totals
    assert w.mean() == pytest.approx(1.0)
    w = sample.weights(0.0)
    assert w[:3].sum() / w[3:].sum() == pytest.approx(300 / 20)  # true proportions


def test_bad_inputs_get_one_clear_error(slovenia, tmp_path: Path) -> None:
    raw, valid, label, names, stats, roles = slovenia
    spec = FeatureSpec.for_bands(stats.count, roles)
    # Parcels over pixels without data (every value NaN).
    nan_only = LabelledImage(np.full_like(raw, np.nan), np.zeros_like(valid), label)
    with pytest.raises(LabelLayerError, match="No labelled pixel with data"):
        fit_classical([nan_only], names, stats, spec, QUICK)
    # A class whose parcels all lie on NoData.
    labels = label.copy()
    cls = int(labels[labels != IGNORE_INDEX][0])
    no_data = valid & ~(labels == cls)
    with pytest.raises(LabelLayerError, match=f"No training pixel with data.*{names[cls]}"):
        fit_classical([LabelledImage(raw, no_data, labels)], names, stats, spec, QUICK)
    (tmp_path / FILE_NAME).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a classical model file"):
        ClassicalModel.load(tmp_path)


def test_enough_validation_pixels_steer_rounds_and_prior(shared_data: Path, tmp_path) -> None:
    raw, valid, label, names, stats, roles = _spacenet(shared_data)
    spec = FeatureSpec.for_bands(stats.count, roles)
    train, val = _north_south(raw, valid, label)
    config = ClassicalConfig(rounds=60, early_stopping_rounds=5, threads=1,
                             max_pixels_per_class=3000)  # fmt: skip
    model = fit_classical([train], names, stats, spec, config, val=[val])
    assert model.info["validation"] == "used for early stopping and the prior shift"
    assert model.info["rounds"] <= 60
    scores = model.info["val_miou_by_prior_shift"]
    assert model.info["prior_shift"] == float(max(scores, key=scores.get))
    # The shift is log-prior times the chosen fraction, and travels with the file.
    totals = np.array([model.info["train_pixels"][n] for n in names], float)
    expected = model.info["prior_shift"] * np.log(totals / totals.sum())
    np.testing.assert_allclose(model.class_bias, expected)
    model.save(tmp_path)
    again = ClassicalModel.load(tmp_path)
    np.testing.assert_allclose(again.class_bias, model.class_bias)
    crop = (slice(None), slice(400, 500), slice(0, 300))
    np.testing.assert_array_equal(
        again.predict_proba(raw[crop], valid[crop[1:]]),
        model.predict_proba(raw[crop], valid[crop[1:]]),
    )


def test_dubai_rgb_photos_with_colour_indices_on_a_held_out_image(shared_data: Path) -> None:
    from rs_reasoner_training.data.folder import (
        DUBAI_COLOURS,
        FolderSource,
        MaskTable,
        dubai_pairs,
    )

    pairs = dubai_pairs(shared_data / "dubai")
    source = FolderSource(pairs, MaskTable.from_colours(DUBAI_COLOURS), downscale=4)
    images = []
    for i in (36, 38, 41):  # two images of tile 5 to learn from, a third held out
        rgb, label = source.load(i)
        images.append(LabelledImage(np.moveaxis(rgb, -1, 0).astype(np.float32),
                                    np.ones(label.shape, bool), label))  # fmt: skip
    pixels = np.concatenate([im.raw[:, im.valid] for im in images[:2]], axis=1)
    stats = BandStats.from_samples(pixels, [1, 2, 3], ["red", "green", "blue"], "uint8")
    spec = FeatureSpec.for_bands(3, {"red": 0, "green": 1, "blue": 2})
    assert {"exg", "grvi"} <= set(spec.index_names())
    names = list(DUBAI_COLOURS)
    model = fit_classical(images[:2], names, stats, spec, QUICK)
    held_out = images[2]
    pred = model.predict_proba(held_out.raw, held_out.valid).argmax(axis=0)
    truth = held_out.labels
    recalls = [(pred[truth == c] == c).mean() for c in range(len(names)) if (truth == c).any()]
    assert np.mean(recalls) > 1.5 / len(names)  # well above chance on another image


def test_validation_too_small_to_steer_is_learnt_from(slovenia) -> None:
    raw, valid, label, names, stats, roles = slovenia
    spec = FeatureSpec.for_bands(stats.count, roles)
    train, val = _halves(raw, valid, label)
    present = [c for c in range(len(names)) if (train.labels == c).any()]
    names = [names[c] for c in present]
    remap = np.full(256, IGNORE_INDEX, np.uint8)
    remap[present] = np.arange(len(present))
    train = LabelledImage(raw, valid, remap[train.labels])
    # One class's validation pixels only: too few classes to steer the fitting.
    one = int(np.bincount(val.labels[val.labels != IGNORE_INDEX]).argmax())
    few = np.where(val.labels == one, remap[val.labels], IGNORE_INDEX).astype(np.uint8)
    val = LabelledImage(raw, valid, few)
    served, scored = fit_classical_to_serve([train], names, stats, spec, QUICK, val=[val])
    assert not scored.info["validation_steered"] and scored is not served
    # The served model learnt from the validation pixels too; the scored one did not.
    added = int(((few != IGNORE_INDEX) & valid).sum())
    assert added > 0
    assert sum(served.info["train_pixels"].values()) == (
        sum(scored.info["train_pixels"].values()) + added
    )
    assert served.info["validation"].endswith("refitted on training + validation labels")
    assert served.info["rounds"] == scored.info["rounds"] == QUICK.rounds_without_validation


def test_validation_that_steers_is_not_trained_on(shared_data: Path) -> None:
    raw, valid, label, names, stats, roles = _spacenet(shared_data)
    train, val = _north_south(raw, valid, label)
    config = ClassicalConfig(rounds=20, early_stopping_rounds=5, threads=1,
                             max_pixels_per_class=2000)  # fmt: skip
    spec = FeatureSpec.for_bands(stats.count, roles)
    served, scored = fit_classical_to_serve([train], names, stats, spec, config, val=[val])
    assert served is scored and served.info["validation_steered"]
    labelled = int(((train.labels != IGNORE_INDEX) & valid).sum())
    assert sum(served.info["train_pixels"].values()) == labelled
