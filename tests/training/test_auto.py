"""model 'auto': candidates trained in turn on the 68-band Slovenia stack, the best on the
validation parcels served, the comparison recorded; the classical learner as verifier."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.models.classical import ClassicalModel
from rs_reasoner_training.api import train_model
from rs_reasoner_training.auto import (
    AUTO_FILE,
    MIN_VAL_REGIONS,
    ClassicalVerifier,
    TileImages,
    check_candidates,
    choose,
    train_auto,
    validation_regions,
)
from rs_reasoner_training.classical import ClassicalConfig
from rs_reasoner_training.data.tiles import parcel_training_data

QUICK_NET = dict(epochs=1, steps_per_epoch=2, batch_size=4, base_channels=8, depth=2,
                 progress_bar=False)  # fmt: skip
QUICK_TREES = ClassicalConfig(rounds=30, rounds_without_validation=30, threads=1,
                              max_pixels_per_class=2000)  # fmt: skip


@pytest.fixture(scope="module")
def slovenia():
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "slovenia"
    if not root.is_dir():
        pytest.skip("shared Slovenia sample missing")
    return parcel_training_data(root / "slovenia_ndvi_68dates_utm33n.tif",
                                root / "slovenia_lulc.gpkg", "LULC_NAME", tile_size=32,
                                all_bands=True)  # fmt: skip


def test_the_best_candidate_on_validation_is_served(slovenia, tmp_path: Path) -> None:
    stages: list[str] = []
    result = train_auto(
        slovenia, tmp_path, train_network=train_model, candidates=("classical", "unet", "unet-ts"),
        classical=QUICK_TREES, device="cpu", callback=lambda s, f, m: stages.append(s),
        **QUICK_NET,
    )  # fmt: skip
    record = json.loads((tmp_path / AUTO_FILE).read_text())
    rows = {c["name"]: c for c in record["comparison"]}
    assert list(rows) == ["classical", "unet", "unet-ts"]
    # Every tile touches a parcel here: teacher-student would repeat the supervised run.
    assert rows["unet-ts"]["stopped"] == "skipped" and "no unlabelled tiles" in rows["unet-ts"][
        "error"]  # fmt: skip
    scored = {n: c["val_miou"] for n, c in rows.items() if c["val_miou"] is not None}
    assert set(scored) == {"classical", "unet"}
    # The best validation score, unless validation is too thin to prefer a network.
    regions = record["validation_regions"]
    assert regions == validation_regions(slovenia)
    thin = min(regions.values()) < MIN_VAL_REGIONS
    best = max(scored, key=scored.get)
    expected = "classical" if thin else best
    assert record["chosen"] == expected == result.extra["chosen"]
    assert record["reason"] == ("best validation mIoU" if expected == best
                                else result.extra["reason"])  # fmt: skip
    assert result.best_miou == pytest.approx(scored[record["chosen"]])
    served = tmp_path / record["checkpoint"]
    assert served == result.best_path
    assert served.read_bytes() == Path(rows[record["chosen"]]["artefact"]).read_bytes()
    other = {"classical.json", "best.pt"} - {served.name}
    assert not (tmp_path / other.pop()).exists()  # one model per folder
    table = result.extra["comparison_table"]
    assert len(table) == 5 and table[0].startswith("candidate")
    assert table[-1] == f"chosen: {record['reason']}"
    assert sum("<- chosen" in line for line in table) == 1
    assert stages[-1] == "done"
    # The classical candidate's file loads as a model on the 68 bands.
    model = ClassicalModel.load(Path(rows["classical"]["artefact"]))
    assert model.stats.count == 68 and model.info["val_miou"] == pytest.approx(
        rows["classical"]["val_miou"])  # fmt: skip


def test_classical_verifier_reads_normalised_tiles(slovenia, tmp_path: Path) -> None:
    from rs_reasoner_training.auto import fit_classical_candidate

    model, cand = fit_classical_candidate(slovenia, tmp_path, QUICK_TREES)
    assert not math.isnan(cand.val_miou)
    verifier = ClassicalVerifier(model)
    item = slovenia.labelled[0]
    names = list(reversed(slovenia.class_names))
    probs = verifier.probs(item["image"][None], names)
    assert probs.shape == (1, len(names), 32, 32)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 32, 32))
    # Normalised bands mapped back to raw values: the model's own probabilities (NaN of
    # cloudy dates read as 0 after normalising, i.e. the 2nd percentile, as the network).
    image = TileImages(slovenia.labelled)[0]
    low = np.asarray(model.stats.low, np.float32)[:, None, None]
    span = np.asarray(model.stats.high, np.float32)[:, None, None] - low
    raw = np.nan_to_num(model.stats.normalise(image.raw, image.valid)) * span + low
    direct = model.predict_proba(raw.astype(np.float32), np.ones((32, 32), bool))
    order = [model.class_names.index(c) for c in names]
    np.testing.assert_allclose(probs[0].numpy(), direct[order], atol=1e-4)


def test_unknown_candidates_and_data_without_bands_are_refused(slovenia, tmp_path) -> None:
    with pytest.raises(InvalidRequestError, match="Unknown auto candidate"):
        check_candidates(["classical", "svm"])
    rgb = type(slovenia)(slovenia.class_names, slovenia.labelled, summary={})
    with pytest.raises(InvalidRequestError, match="normalised bands"):
        train_auto(rgb, tmp_path, train_network=train_model)


def test_classical_candidate_is_scored_by_the_model_that_never_saw_validation(
    slovenia, tmp_path: Path
) -> None:
    from rs_reasoner.models.pixel_features import FeatureSpec
    from rs_reasoner.raster.band_stats import BandStats
    from rs_reasoner_training.auto import classical_scores, fit_classical_candidate
    from rs_reasoner_training.classical import fit_classical

    # A validation minimum no class reaches: validation cannot steer, the served model is refitted.
    few = ClassicalConfig(rounds=30, rounds_without_validation=30, threads=1,
                          max_pixels_per_class=2000, min_val_pixels=10**9)  # fmt: skip
    model, cand = fit_classical_candidate(slovenia, tmp_path, few)
    assert "refitted on training + validation labels" in model.info["validation"]
    stats = BandStats.from_dict(slovenia.summary["band_stats"])
    spec = FeatureSpec.for_bands(stats.count, slovenia.summary.get("band_roles") or {})
    alone = fit_classical(TileImages(slovenia.labelled), slovenia.class_names, stats, spec,
                          few, val=TileImages(slovenia.val))  # fmt: skip
    assert cand.val_miou == pytest.approx(classical_scores(alone, slovenia.val)[0])
    # The refitted model learnt more pixels than the one scored.
    assert sum(model.info["train_pixels"].values()) > sum(alone.info["train_pixels"].values())
    assert ClassicalModel.load(tmp_path).info["val_miou"] == pytest.approx(cand.val_miou)


def test_thin_validation_keeps_the_classical_learner(slovenia) -> None:
    from rs_reasoner_training.data.dataset import IGNORE_INDEX
    from rs_reasoner_training.metrics import region_counts

    regions = validation_regions(slovenia)
    assert set(regions) == set(slovenia.class_names)
    # Counted per tile: each validation tile's regions of each class.
    k = len(slovenia.class_names)
    by_tile = sum(region_counts(np.where(i.valid, i.labels, IGNORE_INDEX), k)
                  for i in TileImages(slovenia.val))  # fmt: skip
    assert list(regions.values()) == list(by_tile)
    thin = {n: 1 for n in slovenia.class_names}
    ample = {n: MIN_VAL_REGIONS for n in slovenia.class_names}
    scores = {"classical": 0.14, "unet": 0.24, "unet-ts-purified": math.nan}
    name, reason = choose(scores, thin)
    assert name == "classical" and "fewer than" in reason and "unet" in reason
    assert choose(scores, ample) == ("unet", "best validation mIoU")
    # Without the classical learner among the candidates the best score stands.
    assert choose({"unet": 0.24, "unet-ts": 0.2}, thin)[0] == "unet"
    assert choose({"classical": 0.3, "unet": 0.24}, thin) == ("classical", "best validation mIoU")
    # The random forest is fitted once like the classical learner: its score stands.
    forest = {"classical": 0.14, "random-forest": 0.2, "unet": 0.18}
    assert choose(forest, thin) == ("random-forest", "best validation mIoU")


def test_the_random_forest_is_measured_beside_the_classical_learner_and_served_if_better(
    slovenia, tmp_path: Path
) -> None:
    """The analyst's baseline in the user's own run: a row of the comparison, scored on
    the same validation tiles, and the served model when it scores best."""
    from rs_reasoner_training.auto import classical_scores
    from rs_reasoner_training.forest import ForestConfig, fit_forest

    result = train_auto(slovenia, tmp_path, train_network=train_model,
                        candidates=("classical", "random-forest"), classical=QUICK_TREES,
                        device="cpu")  # fmt: skip
    record = json.loads((tmp_path / AUTO_FILE).read_text())
    rows = {c["name"]: c for c in record["comparison"]}
    assert list(rows) == ["classical", "random-forest"]
    assert all(r["error"] is None for r in rows.values())
    # The forest's score is that of a forest fitted on the training tiles alone.
    alone = fit_forest(TileImages(slovenia.labelled), slovenia.class_names,
                       ClassicalModel.load(rows["random-forest"]["artefact"]).stats,
                       ForestConfig(threads=1, seed=0))  # fmt: skip
    assert rows["random-forest"]["val_miou"] == pytest.approx(
        classical_scores(alone, slovenia.val)[0]
    )
    best = max(rows, key=lambda n: rows[n]["val_miou"])
    assert record["chosen"] == best == result.extra["chosen"]
    served = ClassicalModel.load(tmp_path)  # either way a classical.json is served
    assert served.info["learner"] == ("lightgbm random forest" if best == "random-forest"
                                      else "lightgbm")  # fmt: skip
    assert not (tmp_path / "best.pt").exists()
    assert any(line.startswith("random-forest") for line in result.extra["comparison_table"])


def test_region_counts_on_real_footprints(shared_data: Path) -> None:
    import rasterio
    from rasterio import features

    from rs_reasoner_training.metrics import region_counts

    with rasterio.open(shared_data / "spacenet_atlanta_pan_utm16n.tif") as ds:
        import geopandas as gpd

        frame = gpd.read_file(shared_data / "spacenet_atlanta_buildings.geojson").to_crs(ds.crs)
        ids = features.rasterize([(g, i + 1) for i, g in enumerate(frame.geometry)],
                                 out_shape=(ds.height, ds.width), transform=ds.transform,
                                 dtype="int32")  # fmt: skip
    label = (ids > 0).astype(np.uint8)
    counts = region_counts(label, 2, min_pixels=1)
    # Most footprints are separate regions (touching ones merge, a thin one may split).
    footprints = len(np.unique(ids[ids > 0]))
    assert footprints // 2 < counts[1] <= footprints + 5
    # A gap of unlabelled pixels between two copies doubles every count.
    gap = np.full((label.shape[0], 3), 255, np.uint8)
    twice = np.concatenate([label, gap, label], axis=1)
    np.testing.assert_array_equal(region_counts(twice, 2, min_pixels=1), 2 * counts)
    # Regions under the minimum are left out.
    big = region_counts(label, 2, min_pixels=10**6)
    assert big[1] == 0


def test_comparison_table_lists_classes_in_the_models_order() -> None:
    """Per-class IoU was sorted by name, not in the model's class order (which a class
    table chooses)."""
    from rs_reasoner_training.auto import Candidate, comparison_table

    iou = {"water": 0.9, "building": None, "road": 0.25}
    [_, row] = comparison_table([Candidate("classical", "LightGBM", 0.6, iou, 3.0)], "classical")
    assert row.endswith("water 0.90, building -, road 0.25  <- chosen")


def test_the_switches_decide_which_default_candidates_run(slovenia, tmp_path: Path) -> None:
    """--no-semi-supervised still trained the teacher-student candidate, and --no-verifier
    its purified variant."""
    from rs_reasoner_training.api import train_prepared
    from rs_reasoner_training.auto import default_candidates

    assert default_candidates() == ("classical", "unet", "unet-ts-purified")
    assert default_candidates(verifier=False) == ("classical", "unet", "unet-ts")
    assert default_candidates(semi_supervised=False, verifier=False) == ("classical", "unet")
    result = train_prepared(slovenia, tmp_path, "auto", semi_supervised=False, verifier=False,
                            device="cpu", **QUICK_NET)  # fmt: skip
    record = json.loads((tmp_path / AUTO_FILE).read_text())
    assert [c["name"] for c in record["comparison"]] == ["classical", "unet"]
    assert result.extra["chosen"] in ("classical", "unet")
