"""The training plan on real rasters: small rasters get tiles that split the parcels and
fill the epochs, and what the plan says (parcels per role, classes absent from
validation) is true of the tiles the loop reads."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from rs_reasoner.schemas import TRAIN_DEFAULTS
from rs_reasoner_training.data.dataset import IGNORE_INDEX
from rs_reasoner_training.data.tiles import (
    MIN_TILE_SIZE,
    MIN_TILES_ACROSS,
    fit_tile_size,
    parcel_training_data,
)
from rs_reasoner_training.plan import plan_lines


@pytest.fixture(scope="module")
def slovenia() -> dict[str, Path]:
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "slovenia"
    if not root.is_dir():
        pytest.skip("shared Slovenia sample missing")
    return {"raster": root / "slovenia_ndvi_68dates_utm33n.tif",
            "labels": root / "slovenia_lulc.gpkg"}  # fmt: skip


@pytest.fixture(scope="module")
def default_plan(slovenia):
    """The 100x101 px, 68-band stack with the default options (tile size 256)."""
    return parcel_training_data(slovenia["raster"], slovenia["labels"], "LULC_NAME",
                                all_bands=True)  # fmt: skip


@pytest.mark.parametrize("side", [100, 401, 1000])
def test_a_raster_too_small_for_the_tile_gets_tiles_it_holds(side: int) -> None:
    asked = TRAIN_DEFAULTS["tile_size"]
    size, note = fit_tile_size((side, side + 1), asked)
    assert size < asked and size % MIN_TILE_SIZE == 0 and size >= MIN_TILE_SIZE
    assert side // size >= MIN_TILES_ACROSS or size == MIN_TILE_SIZE
    assert note is not None and f"tiles of {size} px, not {asked}" in note
    assert f"{side + 1}x{side} px raster" in note


def test_a_raster_large_enough_keeps_the_tile_asked_for() -> None:
    assert fit_tile_size((400, 400), 64) == (64, None)  # the NEON tests' tiles
    assert fit_tile_size((4096, 3000), 256) == (256, None)


def test_the_default_tile_on_a_small_stack_is_cut_into_several_tiles(default_plan) -> None:
    summary = default_plan.summary
    assert summary["tile_size"] < TRAIN_DEFAULTS["tile_size"]
    assert summary["tile_size_asked"] == TRAIN_DEFAULTS["tile_size"]
    # One 256-px tile held the whole 100x101 stack; now there are tiles to train on and
    # to validate on.
    assert summary["tiles"]["train"] >= 4 and summary["tiles"]["val"] >= 1
    lines = plan_lines(summary)
    assert any(line.startswith(f"plan: tiles of {summary['tile_size']} px, not 256")
               for line in lines)  # fmt: skip


def test_the_default_tile_on_a_400_px_scene_splits_parcels_by_tiles(shared_data, tmp_path):
    from tests.support.parcels import write_neon_parcels
    from tests.support.training import NEON

    labels = tmp_path / "parcels.gpkg"
    write_neon_parcels(shared_data / NEON, labels)
    data = parcel_training_data(shared_data / NEON, labels, "cover", all_bands=True)
    summary = data.summary
    # 400 px hold 2x2 tiles of 256: too few blocks to hold parcels out by tiles.
    assert summary["tile_size"] < 256 and 400 // summary["tile_size"] >= MIN_TILES_ACROSS
    assert not set(data.labelled.refs) & set(data.val.refs)  # whole tiles held out
    assert not any("one by one" in n for n in summary["notes"])
    assert summary["parcels"]["val"] > 0 and summary["tiles"]["unlabelled"] > 0


def test_an_epoch_on_the_small_stack_has_enough_optimizer_steps(default_plan, tmp_path) -> None:
    from rs_reasoner.models.unet import UNet
    from rs_reasoner_training.loop import TeacherStudentTask, TrainConfig

    config = TrainConfig(output_dir=str(tmp_path), device="cpu", progress_bar=False)
    model = UNet(len(default_plan.class_names), base_channels=8, depth=2,
                 in_channels=default_plan.in_channels)  # fmt: skip
    task = TeacherStudentTask(model, default_plan, config)
    one_pass = math.ceil(len(default_plan.labelled) / config.batch_size)
    assert one_pass < config.min_steps_per_epoch  # a pass over the tiles is a few steps
    assert task.steps == config.min_steps_per_epoch
    assert task.total_steps == config.min_steps_per_epoch * TRAIN_DEFAULTS["epochs"]


def test_the_plan_counts_every_classified_parcel(slovenia, default_plan) -> None:
    frame = gpd.read_file(slovenia["labels"])
    classified = int((frame["LULC_NAME"].fillna("").str.strip() != "").sum())
    parcels = default_plan.summary["parcels"]
    assert parcels["train"] + parcels["val"] + parcels["left_out"] == classified
    line = plan_lines(default_plan.summary)[0]
    assert line == (f"plan: parcels {parcels['train']} training, {parcels['val']} validation, "
                    f"{parcels['left_out']} left out by the label budget")  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classes_said_absent_from_validation_have_no_validation_pixel(slovenia, seed) -> None:
    data = parcel_training_data(slovenia["raster"], slovenia["labels"], "LULC_NAME",
                                all_bands=True, seed=seed, val_fraction=0.2)  # fmt: skip
    seen: set[int] = set()
    for item in data.val:
        labels = item["label"].numpy()
        seen |= set(np.unique(labels[labels != IGNORE_INDEX]).tolist())
    absent = [n for i, n in enumerate(data.class_names) if i not in seen]
    assert data.summary["classes_without_validation"] == absent
    if absent:
        assert any(f"(their IoU is not measured): {', '.join(absent)}" in line
                   for line in plan_lines(data.summary))  # fmt: skip


def test_a_class_table_names_a_numeric_class_field(slovenia, tmp_path) -> None:
    frame = gpd.read_file(slovenia["labels"])
    pairs = frame[["LULC_ID", "LULC_NAME"]].drop_duplicates().sort_values("LULC_ID")
    table = tmp_path / "lulc.csv"
    # Value 0 is "no label" in this register: '-' leaves those parcels out.
    table.write_text("value,name\n" + "".join(
        f"{i},{n.strip() or '-'}\n" for i, n in zip(pairs["LULC_ID"], pairs["LULC_NAME"],
                                                    strict=True)))  # fmt: skip
    data = parcel_training_data(slovenia["raster"], slovenia["labels"], "LULC_ID",
                                all_bands=True, classes=table)  # fmt: skip
    named = [n.strip() for n in pairs["LULC_NAME"] if n.strip()]
    assert data.class_names == named  # the file's order (by id), not alphabetical
    by_name = parcel_training_data(slovenia["raster"], slovenia["labels"], "LULC_NAME",
                                   all_bands=True)  # fmt: skip
    assert sorted(by_name.class_names) == sorted(named)
    assert data.summary["parcels"] == by_name.summary["parcels"]  # the same parcels
    assert any("named '-' were left out" in n for n in data.summary["notes"])
    # A value the table does not name is one clear error.
    table.write_text("1,cultivated land\n2,forest\n")
    from rs_reasoner_training.errors import LabelLayerError

    with pytest.raises(LabelLayerError, match=r"Value\(s\) '0', '3', '4', '8' of the class "
                       "field 'LULC_ID' are not in the class table"):  # fmt: skip
        parcel_training_data(slovenia["raster"], slovenia["labels"], "LULC_ID",
                             all_bands=True, classes=table)  # fmt: skip
